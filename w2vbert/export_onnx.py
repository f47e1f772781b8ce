"""Stage 7: export the fine-tuned model to ONNX for sherpa-onnx, and check it with sherpa-onnx.

    python -m w2vbert.export_onnx --exp-dir exp/finetune --epoch 30 --avg 9 --use-averaged-model \\
        --tokens data/lang_bpe_500/tokens.txt --int8 \\
        --check-cuts data/fbank/mini_cuts_test-mini.jsonl.gz --decode-dir exp/finetune/greedy_search

Writes ``{encoder,decoder,joiner}-<suffix>.onnx`` (and ``.int8.onnx``), ``tokens.txt`` and, with
--check-cuts/--check-manifest, ``export-check-<suffix>.{json,md}`` (WER, RTF, identical transcripts,
file sizes) into --exp-dir (or --out-dir); the log goes to ``<exp-dir>/log/log-export-<time>``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from w2vbert.export.stage import ExportOptions, run_export
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.lock import DirectoryLock
from w2vbert.util.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = entry_point_parser("w2vbert.export_onnx", __doc__)
    ExportOptions.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    options = ExportOptions.from_args(args)
    log_file = setup_logging((options.out_dir or options.exp_dir) / "log", prefix="log-export")
    logging.info(f"Command: {' '.join(sys.argv)}; log: {log_file}")
    out_dir = options.out_dir or options.exp_dir
    try:
        with DirectoryLock(out_dir, "export", name=".lock-export"):
            run_export(options)
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as e:
        logging.error(f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
