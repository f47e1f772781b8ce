"""Stage 6: decode Lhotse test sets with a fine-tuned transducer; WER (kaldialign) and RTF.

    python -m w2vbert.decode --exp-dir exp/finetune --epoch 30 --avg 9 --use-averaged-model \\
        --decoding-method modified_beam_search --beam-size 4 \\
        --cuts test-clean=data/fbank/librispeech_cuts_test-clean.jsonl.gz test-other=...

Writes <exp-dir>/<method>/{recogs,errs,wer-summary}-<set>-<suffix>.txt and results-<set>-<suffix>.json.
"""

from __future__ import annotations

import argparse
import logging

from w2vbert.decoding.decode_sets import DecodeConfig, decode_sets
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.lock import DirectoryInUseError, DirectoryLock
from w2vbert.util.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = entry_point_parser("w2vbert.decode", __doc__)
    DecodeConfig.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        config = DecodeConfig.from_args(args)
    except ValueError as e:
        parser.error(str(e))
    setup_logging(config.exp_dir / config.decoding_method / "log", "log-decode")
    try:
        with DirectoryLock(config.exp_dir / config.decoding_method, "decoding"):
            summary = decode_sets(config)
    except (ValueError, FileNotFoundError, DirectoryInUseError) as e:
        logging.getLogger(__name__).error(str(e))
        raise SystemExit(1) from e
    for name, info in summary.items():
        print(
            f"{name}\t{info['method']}\t{info['suffix']}\tWER {info['wer']:.2f}%\tRTF {info['rtf']:.4f}"
        )


if __name__ == "__main__":
    main()
