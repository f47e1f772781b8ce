#!/usr/bin/env python3
"""Stage 3: sentencepiece unigram model of the labelled training transcripts.

  local/train_bpe.py --transcripts data/fbank/mini_cuts_train-mini.jsonl.gz \\
      --lang-dir data/lang_bpe_32 --vocab-size 32

--transcripts takes Lhotse cuts or supervisions manifests (texts of their supervisions);
--text takes plain text files (one transcript per line). Writes <lang-dir>/bpe.model,
tokens.txt ("<symbol> <id>"; <blk> = 0, <sos/eos> = 1, <unk> = 2) and transcript_words.txt.
Skipped if bpe.model and tokens.txt exist, unless --force. 500 is the usual size for
LibriSpeech; the mini corpus (~330 training sentences) allows up to ~950 but uses 32 (letters
and "▁THE", egs/librispeech/conf/mini.sh): too few sentences to learn subwords from.
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
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--transcripts", nargs="+", type=Path, help="Lhotse cuts/supervisions manifests"
    )
    src.add_argument(
        "--text", nargs="+", type=Path, help="plain text files, one transcript per line"
    )
    p.add_argument("--lang-dir", type=Path, required=True, help="e.g. data/lang_bpe_256")
    p.add_argument(
        "--vocab-size", type=int, default=256, help="number of pieces, specials included"
    )
    p.add_argument("--force", action="store_true", help="retrain if the model exists")
    p.add_argument("--log-file", type=Path, help="default: <lang-dir>/log/train_bpe.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.lang_dir / "log" / "train_bpe.log")
    # Lhotse and sentencepiece: imported after --help
    from w2vbert.prep.bpe import (
        train_bpe,
        transcripts_from_manifests,
        transcripts_from_text,
    )

    if args.transcripts:
        transcripts = transcripts_from_manifests(args.transcripts)
    else:
        transcripts = transcripts_from_text(args.text)
    with DirectoryLock(args.lang_dir, "stage 3 (train_bpe)"):
        train_bpe(transcripts, args.lang_dir, args.vocab_size, force=args.force)


if __name__ == "__main__":
    run_main(main)
