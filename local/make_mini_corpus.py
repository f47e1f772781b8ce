#!/usr/bin/env python3
"""Stage 0 (mini): synthesise the bundled English mini corpus with espeak-ng, offline.

Labelled parts (train, dev, test) in the LibriSpeech layout and an unlabelled part in the
Libri-Light layout under --out-dir, 16 kHz mono FLAC, text from Debian's fortunes and the King
James Bible (upper case, no digits or symbols). Test voices are used by no other part, dev
voices by no training part; no sentence appears twice. Deterministic in the seed and sizes.

  local/make_mini_corpus.py --out-dir download/mini --seed 0 --nj 2 \\
      --train-minutes 20 --dev-minutes 5 --test-minutes 5 --unlabelled-minutes 120

Writes download/mini/{train-mini,dev-mini,test-mini,unlab-mini}/, SPEAKERS.TXT and
corpus_info.json (hours, speakers and voices per part). The corpus is built beside --out-dir
and renamed when complete; an existing complete corpus of the same settings is kept.
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # usable without path.sh

from w2vbert.prep.mini_corpus import MiniCorpusConfig, make_mini_corpus, tiny_config  # noqa: E402
from w2vbert.prep.text_sources import (  # noqa: E402
    DEFAULT_BIBLE_PROGRAM,
    DEFAULT_FORTUNE_DIR,
    load_default_sentences,
)
from w2vbert.util.lock import DirectoryLock  # noqa: E402
from w2vbert.util.log import run_main, setup_cli_logging  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    d = MiniCorpusConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out-dir", type=Path, default=Path("download/mini"), help="corpus directory")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    p.add_argument(
        "--train-minutes", type=float, default=d.train_minutes, help="labelled training audio"
    )
    p.add_argument("--dev-minutes", type=float, default=d.dev_minutes, help="dev audio")
    p.add_argument(
        "--test-minutes", type=float, default=d.test_minutes, help="test audio (unseen voices)"
    )
    p.add_argument(
        "--unlabelled-minutes", type=float, default=d.unlabelled_minutes, help="unlabelled audio"
    )
    p.add_argument(
        "--labelled-seconds-per-speaker", type=float, default=d.labelled_seconds_per_speaker
    )
    p.add_argument(
        "--unlabelled-seconds-per-speaker", type=float, default=d.unlabelled_seconds_per_speaker
    )
    p.add_argument("--train-part", default=d.train_part)
    p.add_argument("--dev-part", default=d.dev_part)
    p.add_argument("--test-part", default=d.test_part)
    p.add_argument("--unlabelled-part", default=d.unlabelled_part)
    p.add_argument(
        "--tiny", action="store_true", help="a few utterances per part (tests); ignores the sizes"
    )
    p.add_argument("--fortune-dir", type=Path, default=DEFAULT_FORTUNE_DIR)
    p.add_argument("--bible-program", default=DEFAULT_BIBLE_PROGRAM)
    p.add_argument("--force", action="store_true", help="rebuild even if --out-dir holds a corpus")
    p.add_argument(
        "--log-file", type=Path, help="default: <parent of --out-dir>/log/make_mini_corpus.log"
    )
    return p


def main() -> None:
    args = get_parser().parse_args()
    setup_cli_logging(args.log_file or args.out_dir.parent / "log" / "make_mini_corpus.log")
    names = dict(
        train_part=args.train_part,
        dev_part=args.dev_part,
        test_part=args.test_part,
        unlabelled_part=args.unlabelled_part,
    )
    if args.tiny:
        config = dataclasses.replace(tiny_config(args.seed), **names)
    else:
        config = MiniCorpusConfig(
            seed=args.seed,
            train_minutes=args.train_minutes,
            dev_minutes=args.dev_minutes,
            test_minutes=args.test_minutes,
            unlabelled_minutes=args.unlabelled_minutes,
            labelled_seconds_per_speaker=args.labelled_seconds_per_speaker,
            unlabelled_seconds_per_speaker=args.unlabelled_seconds_per_speaker,
            **names,
        )
    config.validate()
    logging.info("Config: %s", config)
    sentences = load_default_sentences(
        fortune_dir=args.fortune_dir,
        bible_program=args.bible_program,
        min_words=config.min_words,
        max_words=config.max_words,
    )
    with DirectoryLock(args.out_dir.parent, "stage 0 (make_mini_corpus)"):
        make_mini_corpus(config, args.out_dir, sentences, num_jobs=args.nj, force=args.force)


if __name__ == "__main__":
    run_main(main)
