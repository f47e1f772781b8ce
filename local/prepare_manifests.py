#!/usr/bin/env python3
"""Stage 1: Lhotse manifests of LibriSpeech- and Libri-Light-layout parts.

  local/prepare_manifests.py --corpus-dir download/mini --output-dir data/manifests --prefix mini
  local/prepare_manifests.py --corpus-dir download/LibriSpeech --output-dir data/manifests \\
      --prefix librispeech --parts train-clean-100 dev-clean test-clean --nj 4
  local/prepare_manifests.py --corpus-dir download/LibriSpeech download/LibriLight \\
      --prefix librilight --parts train-clean-100 dev-clean small --max-cut-duration 30

Writes <output-dir>/<prefix>_{recordings,supervisions}_<part>.jsonl.gz, validated, one recording
at a time (memory does not grow with the corpus). Each part's layout is detected:
<spk>/<chapter>/*.trans.txt (LibriSpeech) or <spk>/<book>/<name>.flac + <name>.json
(Libri-Light); the manifests are those of Lhotse's LibriSpeech recipe and Libri-Light reader.
Without --parts, every sub-directory of --corpus-dir with one of these layouts is a part. Parts
whose manifests exist are skipped unless --force.
With --max-cut-duration S, the VAD segments of each Libri-Light recording are joined greedily
into segments of at most S seconds (pauses included; a longer VAD segment is cut into equal
windows), as Libri-Light's own cut_by_vad does; without it, one segment per VAD segment.

Bad input stops the stage with an error counting every offending file (the first 20 listed): a
transcript line without audio, audio without a transcript line, a line whose audio belongs in
another chapter's directory, an empty or non-ASCII transcript, a blank line or repeated id in a
.trans.txt, unreadable/corrupt/empty audio, Libri-Light audio without a valid JSON. Audio that is not 16 kHz is logged and resampled in stage 2; multi-channel audio is logged
and downmixed to mono (mean of the channels) in stage 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # usable without path.sh

from w2vbert.util.lock import DirectoryLock  # noqa: E402
from w2vbert.util.log import run_main, setup_cli_logging  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--corpus-dir",
        type=Path,
        nargs="+",
        required=True,
        help="directory holding the parts (several: each part is in one of them)",
    )
    p.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--prefix", required=True, help="manifest name prefix, e.g. mini or librispeech")
    p.add_argument(
        "--parts", nargs="+", help="parts (sub-directories) to prepare; default: all found"
    )
    p.add_argument("--nj", type=int, default=1, help="threads reading audio headers")
    p.add_argument(
        "--max-cut-duration",
        type=float,
        help="Libri-Light parts: join VAD segments into segments of at most this many seconds",
    )
    p.add_argument("--force", action="store_true", help="rewrite manifests that exist")
    p.add_argument("--log-file", type=Path, help="default: <output-dir>/log/prepare_manifests.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.output_dir / "log" / "prepare_manifests.log")
    from w2vbert.prep.manifests import (
        prepare_manifests,  # Lhotse: imported after --help
    )

    with DirectoryLock(args.output_dir, "stage 1 (prepare_manifests)"):
        prepare_manifests(
            args.corpus_dir,
            args.output_dir,
            args.prefix,
            args.parts,
            num_jobs=args.nj,
            force=args.force,
            max_cut_duration=args.max_cut_duration,
        )


if __name__ == "__main__":
    run_main(main)
