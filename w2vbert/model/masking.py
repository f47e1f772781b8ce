"""Padding masks and the span masks of w2v-BERT pre-training.

Shapes: N batch, S steps. Padding masks are ``True`` at padding; span masks are ``True`` at
masked (hidden) steps and never inside padding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def make_padding_mask(seq_lens: Tensor, max_len: int | None = None) -> Tensor:
    """Padding mask of a batch of sequences.

    Args:
        seq_lens: (N,) valid lengths.
        max_len: the padded length S; ``seq_lens.max()`` if ``None``.

    Returns:
        (N, S) bool, ``True`` at padding (step >= length).
    """
    if seq_lens.dim() != 1:
        raise ValueError(f"`seq_lens` must be 1-D (N,), but has shape {tuple(seq_lens.shape)}.")
    if max_len is None:
        max_len = int(seq_lens.max()) if seq_lens.numel() > 0 else 0
    steps = torch.arange(max_len, device=seq_lens.device)
    return steps.unsqueeze(0) >= seq_lens.unsqueeze(1)  # (N, S)


def effective_span_lens(seq_lens: Tensor, span_len: int) -> Tensor:
    """Span length used per sequence: ``span_len``, shortened for short sequences.

    A sequence shorter than ``2 * span_len`` gets spans of ``max(1, ceil(len / 2))`` at most, so
    that one span never hides more than half of it (a length-1 sequence has its single step
    masked: at least one span is always drawn).

    Args:
        seq_lens: (N,) valid lengths.

    Returns:
        (N,) int64 span lengths, each in ``[1, span_len]``.
    """
    half = torch.div(seq_lens + 1, 2, rounding_mode="floor").clamp(min=1)
    return half.clamp(max=span_len).to(torch.int64)


def compute_span_mask(
    seq_lens: Tensor,
    max_len: int,
    mask_p: float,
    span_len: int,
    min_num_spans: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Span mask as in w2v-BERT / wav2vec 2.0 pre-training.

    Every step that can start a span (one that lets the whole span end inside the valid length)
    starts one with probability ``mask_p``; each span covers ``span_len`` consecutive steps;
    spans may overlap. For long sequences the masked fraction is about
    ``1 - (1 - mask_p) ** span_len`` (49 % for 0.065 and 10).

    A sequence that drew fewer than ``min_num_spans`` starts gets ``min_num_spans`` extra starts,
    uniform over its valid start positions (they may coincide with each other or with drawn
    spans, so "at least one span" is exact, larger minimums are best-effort). Sequences shorter
    than ``2 * span_len`` use shorter spans, see :func:`effective_span_lens`. Sequences of
    length 0 get no mask. No step at or beyond a sequence's length is ever masked.

    Args:
        seq_lens: (N,) valid lengths, each <= ``max_len``.
        max_len: padded length S of the mask.
        mask_p: probability that a valid step starts a span.
        span_len: span length in steps.
        min_num_spans: minimum number of spans per (non-empty) sequence.
        generator: random generator (device of ``seq_lens``); global RNG if ``None``.

    Returns:
        (N, S) bool, ``True`` = masked.
    """
    problems = []
    if not 0.0 <= mask_p <= 1.0:
        problems.append(f"`mask_p` must be in [0, 1], but is {mask_p} instead.")
    if span_len < 1:
        problems.append(f"`span_len` must be >= 1, but is {span_len} instead.")
    if min_num_spans < 0:
        problems.append(f"`min_num_spans` must be >= 0, but is {min_num_spans} instead.")
    if seq_lens.dim() != 1:
        problems.append(f"`seq_lens` must be 1-D (N,), but has shape {tuple(seq_lens.shape)}.")
    elif seq_lens.numel() > 0 and int(seq_lens.max()) > max_len:
        problems.append(
            f"`seq_lens` must be <= `max_len` ({max_len}), but its maximum is "
            f"{int(seq_lens.max())} instead."
        )
    if problems:
        raise ValueError(" ".join(problems))

    device = seq_lens.device
    num_seqs = seq_lens.size(0)
    seq_lens = seq_lens.to(torch.int64)
    spans = effective_span_lens(seq_lens, span_len)  # (N,)
    # Number of valid start positions: a span starting at s covers [s, s + span).
    num_starts = (seq_lens - spans + 1).clamp(min=0)  # (N,); 0 only for empty sequences

    steps = torch.arange(max_len, device=device)
    can_start = steps.unsqueeze(0) < num_starts.unsqueeze(1)  # (N, S)
    draws = torch.rand((num_seqs, max_len), device=device, generator=generator)
    starts = (draws < mask_p) & can_start  # (N, S)

    if min_num_spans > 0 and num_seqs > 0 and max_len > 0:
        too_few = (starts.sum(dim=1) < min_num_spans) & (num_starts > 0)  # (N,)
        extra = torch.rand((num_seqs, min_num_spans), device=device, generator=generator)
        extra_pos = (extra * num_starts.unsqueeze(1)).floor().to(torch.int64)  # (N, min_num_spans)
        extra_pos = torch.minimum(extra_pos, (num_starts - 1).clamp(min=0).unsqueeze(1))
        extra_on = too_few.unsqueeze(1).expand(-1, min_num_spans)
        starts = starts.scatter(1, extra_pos, starts.gather(1, extra_pos) | extra_on)

    # Step t is masked iff a span started in (t - span, t]: difference of a running count.
    counts = torch.cumsum(starts.to(torch.int32), dim=1)  # (N, S)
    before = steps.unsqueeze(0) - spans.unsqueeze(1)  # (N, S) index of count before the window
    prior = counts.gather(1, before.clamp(min=0))
    prior = torch.where(before >= 0, prior, torch.zeros_like(prior))
    return (counts - prior) > 0
