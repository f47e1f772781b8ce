#!/usr/bin/env python3
"""Stage 0 (librispeech): get LibriSpeech (and optionally Libri-Light) into --target-dir.

  local/download_librispeech.py --target-dir download --parts train-clean-100 dev-clean test-clean
  local/download_librispeech.py --target-dir download --full            # all seven parts, 960 h
  local/download_librispeech.py --target-dir download --existing /data/LibriSpeech   # no download
  local/download_librispeech.py --target-dir download --librilight small  # + download/LibriLight/small

Downloads go through Lhotse (lhotse.recipes.download_librispeech; Libri-Light tars from the
URLs in lhotse.recipes.librilight with lhotse.utils.resumable_download) and are resumable.
--existing PATH (and --existing-librilight PATH) only links <target-dir>/LibriSpeech
(<target-dir>/LibriLight) to a copy that must already hold the requested parts.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # usable without path.sh

from w2vbert.util.lock import DirectoryLock  # noqa: E402
from w2vbert.util.log import run_main, setup_cli_logging  # noqa: E402

LIBRISPEECH_100 = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
LIBRISPEECH_960 = LIBRISPEECH_100 + ("train-clean-360", "train-other-500")
LIBRILIGHT = ("small", "medium", "large")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--target-dir", type=Path, default=Path("download"))
    p.add_argument("--parts", nargs="+", default=list(LIBRISPEECH_100), help="LibriSpeech parts")
    p.add_argument(
        "--full", action="store_true", help="all of LibriSpeech (960 h of training audio)"
    )
    p.add_argument(
        "--librilight", nargs="+", choices=LIBRILIGHT, default=[], help="Libri-Light subsets"
    )
    p.add_argument(
        "--existing", type=Path, help="an existing LibriSpeech directory to link instead"
    )
    p.add_argument(
        "--existing-librilight", type=Path, help="an existing Libri-Light directory to link"
    )
    p.add_argument(
        "--log-file", type=Path, help="default: <target-dir>/log/download_librispeech.log"
    )
    return p


def link_existing(existing: Path, link: Path, parts: list[str]) -> None:
    """Makes ``link`` a symlink to ``existing``, which must hold every one of ``parts``."""
    existing = existing.resolve()
    if not existing.is_dir():
        raise NotADirectoryError(f"--existing {existing} is not a directory")
    missing = [p for p in parts if not (existing / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"{existing} lacks the part(s) {' '.join(missing)}")
    if link.is_symlink() and link.resolve() == existing:
        logging.info("%s already links to %s", link, existing)
        return
    if link.exists() or link.is_symlink():
        raise FileExistsError(f"{link} exists; remove it to link {existing} there instead")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(existing, link)
    logging.info("Linked %s -> %s (parts %s)", link, existing, " ".join(parts))


def download_librilight(target_dir: Path, subsets: list[str]) -> None:
    """Downloads and unpacks Libri-Light subsets into ``target_dir/<subset>/``."""
    import tarfile

    from lhotse.recipes.librilight import LIBRILIGHT_URL
    from lhotse.utils import resumable_download, safe_extract

    for subset in subsets:
        done = target_dir / subset / ".completed"
        if done.is_file():
            logging.info("Libri-Light %s: already unpacked", subset)
            continue
        url = next(u for u in LIBRILIGHT_URL if u.endswith(f"/{subset}.tar"))
        tar_path = target_dir / f"{subset}.tar"
        resumable_download(url, filename=tar_path)
        with tarfile.open(tar_path) as tar:
            safe_extract(tar, path=target_dir)
        done.touch()


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.target_dir / "log" / "download_librispeech.log")
    parts = sorted(set(args.parts) | (set(LIBRISPEECH_960) if args.full else set()))
    unknown = [p for p in parts if p not in LIBRISPEECH_960]
    if unknown:
        raise ValueError(
            f"Unknown LibriSpeech part(s) {unknown}; expected some of {LIBRISPEECH_960}"
        )
    with DirectoryLock(args.target_dir, "stage 0 (download_librispeech)"):
        if args.existing:
            link_existing(args.existing, args.target_dir / "LibriSpeech", parts)
        else:
            from lhotse.recipes import download_librispeech

            download_librispeech(args.target_dir, dataset_parts=parts)
        if args.existing_librilight:
            link_existing(args.existing_librilight, args.target_dir / "LibriLight", args.librilight)
        elif args.librilight:
            download_librilight(args.target_dir / "LibriLight", args.librilight)


if __name__ == "__main__":
    run_main(main)
