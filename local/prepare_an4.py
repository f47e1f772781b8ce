#!/usr/bin/env python3
"""Stage 1 (--corpus an4): Lhotse manifests of CMU's AN4 (w2vbert.prep.an4_manifests.prepare_an4).

  local/prepare_an4.py --corpus-dir download/an4 --output-dir data/manifests \\
      --audio-dir data/an4_flac --num-dev 100 --subset-denominator 8

Writes <output-dir>/<prefix>_{recordings,supervisions}_<part>.jsonl.gz for the parts train (AN4's
training set less dev), dev (--num-dev utterances of whole training speakers), test (AN4's test
set) and train-1of<N> (1/N of train's utterances, whole speakers: few-label fine-tuning). The
headerless big-endian audio is converted once, losslessly, to FLAC in --audio-dir (reused when
complete; --force converts again). Transcript markers (<s>, </s>) and "(utterance-id)" are
stripped. A malformed transcript or file-list line, a repeated id, an id without audio, audio
without a transcript, or audio of an odd byte count stops the stage with an error naming every
offending file and line (the first 20 listed).
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # usable without path.sh

from w2vbert.util.lock import DirectoryLock  # noqa: E402
from w2vbert.util.log import run_main, setup_cli_logging  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--corpus-dir", type=Path, required=True, help="the an4 directory (etc/, wav/)")
    p.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--audio-dir", type=Path, help="FLAC copies (default: <output-dir>/an4_flac)")
    p.add_argument("--prefix", default="an4", help="manifest name prefix")
    p.add_argument("--num-dev", type=int, default=100, help="dev utterances (whole speakers)")
    p.add_argument("--subset-denominator", type=int, default=8, help="N of the train-1ofN part")
    p.add_argument("--seed", type=int, default=0, help="the order train-1ofN's speakers are drawn in")
    p.add_argument("--nj", type=int, default=1, help="threads converting the audio")
    p.add_argument("--force", action="store_true", help="convert the audio again")
    p.add_argument("--log-file", type=Path, help="default: <output-dir>/log/prepare_an4.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.output_dir / "log" / "prepare_an4.log")
    from w2vbert.prep.an4_manifests import prepare_an4  # Lhotse: imported after --help

    audio_dir = args.audio_dir or args.output_dir / "an4_flac"
    with DirectoryLock(args.output_dir, "stage 1 (prepare_an4)"):
        if args.force and audio_dir.is_dir():
            shutil.rmtree(audio_dir)
        prepare_an4(args.corpus_dir, args.output_dir, audio_dir=audio_dir, prefix=args.prefix,
                    num_dev=args.num_dev, subset_denominator=args.subset_denominator,
                    seed=args.seed, num_jobs=args.nj)  # fmt: skip


if __name__ == "__main__":
    run_main(main)
