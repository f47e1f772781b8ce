#!/usr/bin/env python3
"""Stage 2: 80-dim kaldifeat fbank of Lhotse manifests, stored with LilcomChunkyWriter.

  local/compute_fbank.py --manifest-dir data/manifests --output-dir data/fbank --prefix mini --nj 2

Reads <manifest-dir>/<prefix>_{recordings,supervisions}_<part>.jsonl.gz (from stage 1 or any
other Lhotse recipe; supervisions grouped by recording, in the recordings' order) and writes
<output-dir>/<prefix>_cuts_<part>.jsonl.gz with the features in <output-dir>/<prefix>_feats_<part>/,
plus <prefix>_cuts_pretrain.jsonl.gz, the union of the --pretrain-parts (speed-perturbed copies
left out), globally shuffled (--shuffle-seed). Memory is constant in corpus size: manifests are
read lazily and written as they go (bench/data_prep_memory.py). One cut per supervision (a
LibriSpeech utterance, a Libri-Light voice-activity segment). Non-16 kHz audio is resampled and
multi-channel audio downmixed (both logged). Training cuts shorter than --min-cut-duration or
longer than --max-cut-duration are dropped (count logged; the old names --min-duration and
--max-duration still work); dev/test parts keep every cut that gives at least one encoder
frame. Parts whose cuts file exists are skipped unless --force.

Pieces and parallel jobs: each part is computed in --num-pieces pieces (default --nj), contiguous
ranges of its recordings, run --nj at a time. A finished piece is kept when a run stops (error,
kill, full disk) and skipped by the next one; an unfinished piece restarts alone. On several
machines sharing --output-dir, run one piece per job, then join them once all have finished:

  for i in 0 .. 99 (one job each):  local/compute_fbank.py ... --num-pieces 100 --piece $i
  then, once:                       local/compute_fbank.py ... --num-pieces 100

(the last call computes any piece still missing, joins each part's pieces, and writes the
unions and the Shar directory). The part's cuts are the same for any --num-pieces.

Big corpora: --shar-dir DIR also writes the pre-training cuts as Lhotse Shar (shards of
--shar-shard-size cuts with the features, or the audio only with --shar-fields audio), which
training reads with --train-cuts DIR (shard order shuffled per epoch; audio-only shards need
--on-the-fly-feats). --train-union also writes <prefix>_cuts_train.jsonl.gz, the shuffled
union of the --train-parts (speed-perturbed copies kept), for fine-tuning on several parts.
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
    p.add_argument("--nj", type=int, default=1, help="feature extraction processes (pieces at a time)")
    p.add_argument(
        "--device", default="cpu",
        help="kaldifeat's device: cpu, or cuda / cuda:N to compute the fbank on a GPU (with --nj 1 "
        "per GPU; audio decoding stays on the CPU)",
    )  # fmt: skip
    p.add_argument("--num-pieces", type=int, help="pieces per part (default: --nj)")
    p.add_argument(
        "--piece", type=int, help="compute only this piece (0-based) of every part, for one job"
    )
    p.add_argument("--shuffle-seed", type=int, default=0, help="seed of the unions' shuffle")
    p.add_argument(
        "--train-union", action=argparse.BooleanOptionalAction, default=False,
        help="also write <prefix>_cuts_train.jsonl.gz: the --train-parts' cuts, shuffled",
    )  # fmt: skip
    p.add_argument("--shar-dir", type=Path, help="also write the pre-training cuts as Shar here")
    p.add_argument(
        "--shar-fields", default="features", choices=("features", "audio"),
        help="what the Shar shards hold: the stored fbank (lilcom) or the audio (FLAC)",
    )  # fmt: skip
    p.add_argument("--shar-shard-size", type=int, default=1000, help="cuts per Shar shard")
    p.add_argument("--force", action="store_true", help="recompute parts whose cuts exist")
    p.add_argument("--log-file", type=Path, help="default: <output-dir>/log/compute_fbank.log")
    return p


def main() -> None:
    args = get_parser().parse_args()
    if args.device != "cpu":
        import torch

        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            raise SystemExit(
                f"--device {args.device}: expected cpu or cuda[:N] on a machine with a CUDA GPU "
                f"(torch {torch.__version__} sees {torch.cuda.device_count()} GPU(s))"
            )
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
    )
    from w2vbert.prep.cut_unions import PRETRAIN_NAME, warn_shared_ids, write_unions
    from w2vbert.prep.shar_export import write_shar
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
    num_pieces = args.num_pieces or max(1, args.nj)
    if args.piece is not None and not 0 <= args.piece < num_pieces:
        raise SystemExit(f"--piece must be in [0, {num_pieces}) (--num-pieces), but is {args.piece}")
    if args.shar_dir is not None and not pretrain_parts:
        raise SystemExit("--shar-dir writes the pre-training cuts, but there are no --pretrain-parts")
    lock_name = ".lock" if args.piece is None else f".lock.piece-{args.piece}-of-{num_pieces}"
    with DirectoryLock(args.output_dir, "stage 2 (compute_fbank)", name=lock_name):
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
                    num_pieces=num_pieces,
                    piece=args.piece,
                    device=args.device,
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
        if args.piece is not None:
            logging.info("Piece %d of %d done; join with a run without --piece", args.piece, num_pieces)
            return
        warn_shared_ids(args.output_dir, args.prefix, train_parts, eval_parts)
        write_unions(args.output_dir, args.prefix, pretrain_parts,
                     train_parts if args.train_union else None,
                     seed=args.shuffle_seed, force=args.force)  # fmt: skip
        if args.shar_dir is not None:
            pretrain = args.output_dir / f"{args.prefix}_cuts_{PRETRAIN_NAME}.jsonl.gz"
            write_shar(pretrain, args.shar_dir, fields=args.shar_fields,
                       shard_size=args.shar_shard_size, force=args.force)  # fmt: skip


if __name__ == "__main__":  # required: --nj > 1 spawns worker processes that import this file
    from w2vbert.util.log import run_main

    run_main(main)
