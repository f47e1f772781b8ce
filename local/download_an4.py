#!/usr/bin/env python3
"""Stage 0 (--corpus an4): CMU's AN4 (an4_raw.bigendian) as <target-dir>/an4.

  local/download_an4.py --target-dir download                       # from CMU (needs the network)
  local/download_an4.py --target-dir download --archive an4_raw.bigendian.tar.gz   # a local copy
  local/download_an4.py --target-dir download --existing /data/an4  # link an unpacked tree

The archive (64 MB, http://www.speech.cs.cmu.edu/databases/an4/an4_raw.bigendian.tar.gz) is
unpacked whole or not at all; a finished <target-dir>/an4 is kept. The tree must hold
etc/an4_{train,test}.{transcription,fileids} and wav/.
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
    p.add_argument("--target-dir", type=Path, default=Path("download"))
    source = p.add_mutually_exclusive_group()
    source.add_argument("--archive", type=Path, help="a local an4_raw.bigendian.tar.gz to unpack")
    source.add_argument("--existing", type=Path, help="an unpacked AN4 directory to link")
    p.add_argument("--url", help="where to download the archive from (default: CMU's AN4 page)")
    p.add_argument("--log-file", type=Path, help="default: <target-dir>/log/download_an4.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.target_dir / "log" / "download_an4.log")
    from w2vbert.prep.an4_download import URL, download_an4, link_an4, unpack_an4

    with DirectoryLock(args.target_dir, "stage 0 (download_an4)"):
        if args.existing:
            link_an4(args.existing, args.target_dir)
        elif args.archive:
            unpack_an4(args.archive, args.target_dir)
        else:
            download_an4(args.target_dir, args.url or URL)


if __name__ == "__main__":
    run_main(main)
