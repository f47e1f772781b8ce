#!/usr/bin/env python3
"""Stage 2: 80-dim kaldifeat fbank of Lhotse manifests, stored with LilcomChunkyWriter.

  local/compute_fbank.py --manifest-dir data/manifests --output-dir data/fbank --prefix mini --nj 2

Reads <manifest-dir>/<prefix>_{recordings,supervisions}_<part>.jsonl.gz (from stage 1 or any
other Lhotse recipe) and writes <output-dir>/<prefix>_cuts_<part>.jsonl.gz with the features in
<output-dir>/<prefix>_feats_<part>/, plus <prefix>_cuts_pretrain.jsonl.gz, the union of the
--pretrain-parts (speed-perturbed copies left out). One cut per supervision (a LibriSpeech
utterance, a Libri-Light voice-activity segment). Non-16 kHz audio is resampled and
multi-channel audio downmixed (both logged). Training cuts shorter than --min-cut-duration or
longer than --max-cut-duration are dropped (count logged; the old names --min-duration and
--max-duration still work); dev/test parts keep every cut that gives at least one encoder
frame. Parts whose cuts file exists are skipped unless --force.
Fbank options: w2vbert/data/fbank.py; --fbank icefall (default: dither 0, snip_edges False,
low_freq 20, high_freq -400) or --fbank w2v-bert-2.0 (what w2v-BERT 2.0 was trained on: int16
sample scale, snip_edges True, high_freq 8000); training and decoding check that stored
features are of the model's kind.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # usable without path.sh


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest-dir", type=Path, default=Path("data/manifests"))
    p.add_argument("--output-dir", type=Path, default=Path("data/fbank"))
    p.add_argument("--prefix", required=True, help="manifest name prefix, e.g. mini or librispeech")
    p.add_argument("--parts", nargs="+", help="default: every part with manifests of --prefix")
    p.add_argument(
        "--train-parts",
        nargs="+",
        help="parts that get speed perturbation; default: parts named train*",
    )
    p.add_argument(
        "--eval-parts", nargs="+", help="parts not length-filtered; default: parts named dev*/test*"
    )
    p.add_argument(
        "--pretrain-parts",
        nargs="+",
        help="union -> <prefix>_cuts_pretrain.jsonl.gz; default: parts without transcripts",
    )
    p.add_argument(
        "--speed-perturb",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add 0.9/1.1 speed copies of --train-parts",
    )
    # not --min/max-duration: elsewhere in the recipe --max-duration is seconds of audio per batch
    p.add_argument(
        "--min-cut-duration",
        "--min-duration",
        dest="min_cut_duration",
        type=float,
        default=0.3,
        help="seconds: shorter training cuts are dropped (old name: --min-duration)",
    )
    p.add_argument(
        "--max-cut-duration",
        "--max-duration",
        dest="max_cut_duration",
        type=float,
        default=30.0,
        help="seconds: longer training cuts are dropped (old name: --max-duration)",
    )
    p.add_argument(
        "--fbank", default="icefall", choices=("icefall", "w2v-bert-2.0"),
        help="fbank kind: the one the model to train reads (its config's fbank)",
    )  # fmt: skip
    p.add_argument("--nj", type=int, default=1, help="feature extraction processes")
    p.add_argument("--force", action="store_true", help="recompute parts whose cuts exist")
    p.add_argument("--log-file", type=Path, help="default: <output-dir>/log/compute_fbank.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    if args.nj > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers
    import logging
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import torch

    from w2vbert.prep.compute_features import (
        compute_fbank_part,
        find_manifest_parts,
        training_cut_filter,
        untranscribed_parts,
        warn_shared_ids,
        write_pretrain_cuts,
    )
    from w2vbert.util.lock import DirectoryLock
    from w2vbert.util.log import setup_cli_logging

    setup_cli_logging(args.log_file or args.output_dir / "log" / "compute_fbank.log")
    if args.nj > 1:
        torch.set_num_threads(1)
    parts = args.parts or find_manifest_parts(args.manifest_dir, args.prefix)
    train_parts = args.train_parts or [p for p in parts if p.startswith("train")]
    eval_parts = args.eval_parts or [p for p in parts if p.startswith(("dev", "test"))]
    pretrain_parts = args.pretrain_parts
    if pretrain_parts is None:
        pretrain_parts = untranscribed_parts(args.manifest_dir, args.prefix, parts)
    logging.info(
        "Parts %s; train %s; eval %s; pretrain %s", parts, train_parts, eval_parts, pretrain_parts
    )
    length_filter = training_cut_filter(
        min_duration=args.min_cut_duration, max_duration=args.max_cut_duration
    )
    with DirectoryLock(args.output_dir, "stage 2 (compute_fbank)"):
        # One pool for all parts: each spawned worker imports torch and kaldifeat once.
        executor = (
            ProcessPoolExecutor(args.nj, mp_context=get_context("spawn")) if args.nj > 1 else None
        )
        try:
            for part in parts:
                compute_fbank_part(
                    args.manifest_dir,
                    args.output_dir,
                    args.prefix,
                    part,
                    length_filter=None if part in eval_parts else length_filter,
                    speed_perturb=args.speed_perturb and part in train_parts,
                    num_jobs=args.nj,
                    executor=executor,
                    force=args.force,
                    fbank=args.fbank,
                )
        except BaseException:  # an error, SIGTERM or Ctrl-C: the workers must not go on writing
            if executor is not None:
                workers = list((getattr(executor, "_processes", None) or {}).values())
                executor.shutdown(wait=False, cancel_futures=True)
                for process in workers:
                    process.terminate()
            raise
        finally:
            if executor is not None:
                executor.shutdown()
        warn_shared_ids(args.output_dir, args.prefix, train_parts, eval_parts)
        if pretrain_parts:
            write_pretrain_cuts(args.output_dir, args.prefix, pretrain_parts)
        else:
            logging.info(
                "No pre-training parts: %s_cuts_pretrain.jsonl.gz not written", args.prefix
            )


if __name__ == "__main__":  # required: --nj > 1 spawns worker processes that import this file
    from w2vbert.util.log import run_main

    run_main(main)
