"""Pruned RNN-T loss (icefall call order), optional CTC loss, and the simple/pruned warm-up scales.

:func:`transducer_loss` computes the losses of a :class:`w2vbert.model.transducer.TransducerOutput`
(the model returns what the loss needs; it computes no loss itself).

The backend (k2 or fast_rnnt, see :mod:`w2vbert.objectives.rnnt_backend`) is only called with
the arguments both libraries share (``rnnt_type`` / ``modified`` / ``use_hat_loss`` are left at
their "regular RNN-T" defaults, which differ in name between versions), so the same code runs
on either.

Shapes: N batch, S encoder steps, U tokens, K vocabulary size, J joiner dim, R prune range.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from w2vbert.model.transducer import TransducerOutput
from w2vbert.objectives.rnnt_backend import backend


@dataclasses.dataclass
class TransducerLoss:
    """Losses of one batch, each summed over the batch (reduction "sum")."""

    simple: Tensor
    """Scalar: smoothed RNN-T loss of the additive ("simple") joiner."""
    pruned: Tensor
    """Scalar: RNN-T loss of the full joiner inside the pruning ranges."""
    ctc: Tensor | None
    """Scalar CTC loss of the auxiliary head, or None when the model has none."""
    num_frames: int
    """Number of valid encoder frames in the batch (for per-frame normalisation in logs)."""


def _boundary(symbol_lens: Tensor, frame_lens: Tensor) -> Tensor:
    """(N, 4) int64 ``[0, 0, U_n, S_n]`` per utterance."""
    boundary = torch.zeros((symbol_lens.size(0), 4), dtype=torch.int64, device=frame_lens.device)
    boundary[:, 2] = symbol_lens
    boundary[:, 3] = frame_lens
    return boundary


def _check_inputs(
    symbols: Tensor, symbol_lens: Tensor, frame_lens: Tensor, num_frames: int
) -> None:
    if symbols.dim() != 2 or symbols.dtype != torch.int64:
        raise ValueError(
            f"`symbols` must be (N, U) int64, but is {tuple(symbols.shape)} {symbols.dtype}."
        )
    if int(frame_lens.max()) > num_frames:
        raise ValueError(
            f"`frame_lens` must not exceed the {num_frames} frames of the encoder output, "
            f"but its maximum is {int(frame_lens.max())}."
        )
    if bool((symbol_lens > symbols.size(1)).any()):
        raise ValueError(
            f"`symbol_lens` must not exceed U={symbols.size(1)}, but is {symbol_lens.tolist()}."
        )


def pruned_rnnt_loss(
    *,
    simple_am: Tensor,
    simple_lm: Tensor,
    am: Tensor,
    lm: Tensor,
    joiner: Callable[[Tensor, Tensor], Tensor],
    symbols: Tensor,
    symbol_lens: Tensor,
    frame_lens: Tensor,
    blank_id: int = 0,
    prune_range: int = 5,
    am_scale: float = 0.0,
    lm_scale: float = 0.25,
) -> tuple[Tensor, Tensor]:
    """Pruned RNN-T loss, in fp32 whatever autocast says.

    Args:
        simple_am: (N, S, K) encoder logits of the additive joiner.
        simple_lm: (N, U+1, K) prediction-network logits of the additive joiner.
        am: (N, S, J) encoder output after the joiner's ``encoder_proj``.
        lm: (N, U+1, J) decoder output after the joiner's ``decoder_proj``.
        joiner: maps pruned (N, S, R, J) am and lm to (N, S, R, K) logits (no input projection).
        symbols: (N, U) int64 token ids (padding: any valid id).
        symbol_lens: (N,) number of tokens per utterance.
        frame_lens: (N,) valid encoder frames per utterance.
        prune_range: R, the symbols kept per frame (``s_range``); R >= max U + 1 keeps all.
        am_scale, lm_scale: weights of the am-only / lm-only terms of the smoothed loss.
    Returns:
        (simple_loss, pruned_loss), scalars summed over the batch.
    """
    _check_inputs(symbols, symbol_lens, frame_lens, simple_am.size(1))
    boundary = _boundary(symbol_lens, frame_lens)
    with torch.autocast(device_type=simple_am.device.type, enabled=False):
        simple_loss, (px_grad, py_grad) = backend.rnnt_loss_smoothed(
            lm=simple_lm.float(),
            am=simple_am.float(),
            symbols=symbols,
            termination_symbol=blank_id,
            lm_only_scale=lm_scale,
            am_only_scale=am_scale,
            boundary=boundary,
            reduction="sum",
            return_grad=True,
        )
    # (N, S, R): the R symbol positions kept at each frame.
    ranges = backend.get_rnnt_prune_ranges(
        px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range
    )
    # (N, S, J), (N, U+1, J) -> (N, S, R, J) each.
    am_pruned, lm_pruned = backend.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
    logits = joiner(am_pruned, lm_pruned)  # (N, S, R, K)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        pruned_loss = backend.rnnt_loss_pruned(
            logits=logits.float(),
            symbols=symbols,
            ranges=ranges,
            termination_symbol=blank_id,
            boundary=boundary,
            reduction="sum",
        )
    return simple_loss, pruned_loss


def transducer_loss(
    out: TransducerOutput, *, prune_range: int = 5, am_scale: float = 0.0, lm_scale: float = 0.25
) -> TransducerLoss:
    """Pruned RNN-T loss (+ CTC when the model has a CTC head) of a batch, summed over the batch.

    ``prune_range``, ``am_scale``, ``lm_scale``: as icefall's ``--prune-range --am-scale --lm-scale``.
    """
    simple, pruned = pruned_rnnt_loss(
        simple_am=out.simple_am,
        simple_lm=out.simple_lm,
        am=out.am,
        lm=out.lm,
        joiner=out.joiner,
        symbols=out.symbols,
        symbol_lens=out.symbol_lens,
        frame_lens=out.frame_lens,
        blank_id=out.blank_id,
        prune_range=prune_range,
        am_scale=am_scale,
        lm_scale=lm_scale,
    )
    ctc = None
    if out.ctc_log_probs is not None:
        ctc = ctc_loss(
            out.ctc_log_probs, out.frame_lens, out.symbols, out.symbol_lens, blank_id=out.blank_id
        )
    return TransducerLoss(
        simple=simple, pruned=pruned, ctc=ctc, num_frames=int(out.frame_lens.sum())
    )


def full_rnnt_loss(
    logits: Tensor, symbols: Tensor, symbol_lens: Tensor, frame_lens: Tensor, *, blank_id: int = 0
) -> Tensor:
    """Unpruned RNN-T loss of (N, S, U+1, K) joiner logits, summed over the batch (fp32).

    A reference for tests and small models; memory grows as N*S*U*K.
    """
    _check_inputs(symbols, symbol_lens, frame_lens, logits.size(1))
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return backend.rnnt_loss(
            logits=logits.float(),
            symbols=symbols,
            termination_symbol=blank_id,
            boundary=_boundary(symbol_lens, frame_lens),
            reduction="sum",
        )


def ctc_loss(
    log_probs: Tensor,
    frame_lens: Tensor,
    symbols: Tensor,
    symbol_lens: Tensor,
    *,
    blank_id: int = 0,
) -> Tensor:
    """CTC loss of (N, S, K) log-probabilities against (N, U) symbols, summed over the batch (fp32).

    Utterances with more tokens than frames give an infinite loss, which is zeroed
    (``zero_infinity``); the cut filters should have dropped them.
    """
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),  # (N, S, K) -> (S, N, K)
            symbols,
            frame_lens,
            symbol_lens,
            blank=blank_id,
            reduction="sum",
            zero_infinity=True,
        )


def rnnt_loss_scales(
    step: int, warm_step: int, simple_loss_scale: float = 0.5
) -> tuple[float, float]:
    """Warm-up weights ``(simple_scale, pruned_scale)`` of the two RNN-T losses at ``step``.

    Linear ramps over ``warm_step`` steps, as icefall's zipformer: the simple loss goes from
    1.0 to ``simple_loss_scale``, the pruned loss from 0.1 to 1.0 (the pruning ranges are poor
    while the simple loss is still untrained). Constant from ``warm_step`` on.
    """
    if warm_step < 0:
        raise ValueError(f"`warm_step` must be >= 0, but is {warm_step} instead.")
    if step < 0:
        raise ValueError(f"`step` must be >= 0, but is {step} instead.")
    if step >= warm_step:
        return simple_loss_scale, 1.0
    frac = step / warm_step
    return 1.0 - frac * (1.0 - simple_loss_scale), 0.1 + 0.9 * frac
