"""Command-line arguments shared by the benchmark scripts (stdlib only)."""

from __future__ import annotations

import argparse


def add_timing_args(p: argparse.ArgumentParser, *, threads: int = 2) -> None:
    """``--threads``, ``--warmup`` and ``--steps``: what ``_harness.set_threads`` and
    ``_harness.time_steps`` take."""
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)


def step_parser(description: str) -> argparse.ArgumentParser:
    """The benchmark configuration of issue 8: batch 4 x 10 s, d256, 4 + 4 layers, 4 heads..."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds per utterance")
    p.add_argument("--dim", type=int, default=256, help="model dim")
    p.add_argument("--contrastive-layers", type=int, default=4)
    p.add_argument("--mlm-layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024, help="FFN inner dim")
    p.add_argument("--kernel", type=int, default=31, help="depthwise conv kernel")
    p.add_argument("--codebook-entries", type=int, default=1024, help="one codebook of this size")
    p.add_argument("--distractors", type=int, default=100)
    add_timing_args(p)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--no-flops", action="store_true", help="skip the FlopCounterMode pass")
    p.add_argument("--seed", type=int, default=0)
    return p
