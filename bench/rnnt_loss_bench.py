#!/usr/bin/env python
"""Pruned vs full RNN-T loss (+ gradient), time and peak memory, one mode per process.

Both modes start from the same random encoder output (N, S, J) and decoder output (N, U+1, J)
and include the joiner (J -> tanh -> K) on their lattice, then ``backward()``:

- ``pruned``: the project's ``pruned_rnnt_loss`` (icefall order: ``rnnt_loss_smoothed`` ->
  ``get_rnnt_prune_ranges`` -> ``do_rnnt_pruning`` -> joiner on (N, S, R, J) ->
  ``rnnt_loss_pruned``), loss = 0.5 * simple + pruned;
- ``full``: the joiner on the whole (N, S, U+1, J) lattice and the backend's ``rnnt_loss``.

Peak memory: ``ru_maxrss`` of this process minus its RSS just before the first loss.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _harness import (  # noqa: E402
    current_rss_mb,
    emit,
    peak_rss_mb,
    set_threads,
    step_summary,
    time_steps,
)
from _step_args import add_timing_args  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["pruned", "full"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=500, help="S, encoder steps")
    p.add_argument("--tokens", type=int, default=100, help="U, tokens per utterance")
    p.add_argument("--vocab", type=int, default=500, help="K")
    p.add_argument("--joiner-dim", type=int, default=512, help="J")
    p.add_argument("--prune-range", type=int, default=5)
    add_timing_args(p)
    a = p.parse_args()
    set_threads(a.threads)
    import torch
    from torch import nn

    from w2vbert.objectives.rnnt import full_rnnt_loss, pruned_rnnt_loss
    from w2vbert.objectives.rnnt_backend import backend_name

    g = torch.Generator().manual_seed(0)
    n, s, u, k, j = a.batch, a.frames, a.tokens, a.vocab, a.joiner_dim
    enc = torch.randn(n, s, j, generator=g).requires_grad_()  # (N, S, J)
    dec = torch.randn(n, u + 1, j, generator=g).requires_grad_()  # (N, U+1, J)
    symbols = torch.randint(1, k, (n, u), generator=g)
    symbol_lens = torch.full((n,), u, dtype=torch.int64)
    frame_lens = torch.full((n,), s, dtype=torch.int64)
    torch.manual_seed(0)
    enc_proj, dec_proj, out_proj = nn.Linear(j, j), nn.Linear(j, j), nn.Linear(j, k)
    simple_am_proj, simple_lm_proj = nn.Linear(j, k), nn.Linear(j, k)

    def joiner(am: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:  # (..., J) x2 -> (..., K)
        return out_proj(torch.tanh(am + lm))

    def pruned_step() -> None:
        simple, pruned = pruned_rnnt_loss(
            simple_am=simple_am_proj(enc),
            simple_lm=simple_lm_proj(dec),
            am=enc_proj(enc),
            lm=dec_proj(dec),
            joiner=joiner,
            symbols=symbols,
            symbol_lens=symbol_lens,
            frame_lens=frame_lens,
            prune_range=a.prune_range,
        )
        (0.5 * simple + pruned).backward()

    def full_step() -> None:
        # (N, S, 1, J) + (N, 1, U+1, J) -> (N, S, U+1, K)
        logits = joiner(enc_proj(enc).unsqueeze(2), dec_proj(dec).unsqueeze(1))
        full_rnnt_loss(logits, symbols, symbol_lens, frame_lens).backward()

    def step() -> None:
        enc.grad = dec.grad = None
        (pruned_step if a.mode == "pruned" else full_step)()

    rss_before = current_rss_mb()
    times = time_steps(step, warmup=a.warmup, steps=a.steps)
    peak = peak_rss_mb()
    result = step_summary(times, 0.0)
    result.pop("audio_sec_per_sec")
    result.update(
        mode=a.mode,
        backend=backend_name(),
        shape=dict(N=n, S=s, U=u, K=k, J=j),
        prune_range=a.prune_range if a.mode == "pruned" else None,
        peak_rss_mb=round(peak, 1),
        rss_before_mb=round(rss_before, 1),
        peak_delta_mb=round(peak - rss_before, 1),
    )
    emit(result)


if __name__ == "__main__":
    main()
