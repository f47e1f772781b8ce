"""``Linear -> SiLU -> Linear`` that keeps one wide activation for the backward pass, not two.

Autograd would save the first projection's output ``a`` (for SiLU's backward) and ``silu(a)``
(for the second projection's), two (N, S, F) tensors per feed-forward module, F = 4 M: most of a
conformer's activation memory. Here only ``a`` is kept and ``silu(a)`` is recomputed in the
backward pass (an elementwise op, ~1 % of the module's FLOPs). The forward computes the same ops
in the same order as the composed modules, so outputs are bit-identical; gradients equal to
rounding.

Under autocast the projections run in the autocast dtype (as ``nn.Linear`` would) and the
backward pass uses the dtype the forward pass used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _SiluMlp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None):
        a = F.linear(x, w1, b1)  # (..., F): autocast casts as for nn.Linear
        y = F.linear(F.silu(a), w2, b2)  # (..., M)
        ctx.save_for_backward(x, a, w1, w2)
        ctx.has_bias = (b1 is not None, b2 is not None)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, a, w1, w2 = ctx.saved_tensors
        dtype = a.dtype  # the forward's compute dtype (autocast's, or the inputs')
        grad_y = grad_y.to(dtype)
        sig = torch.sigmoid(a)
        h = a * sig  # silu(a), recomputed
        flat_g, flat_h = grad_y.reshape(-1, grad_y.shape[-1]), h.reshape(-1, h.shape[-1])
        grad_w2 = (flat_g.t() @ flat_h).to(w2.dtype)
        grad_b2 = flat_g.sum(0).to(w2.dtype) if ctx.has_bias[1] else None
        del h, flat_h
        grad_h = grad_y @ w2.to(dtype)  # (..., F)
        grad_a = grad_h.mul_(sig.mul_(1.0 + a * (1.0 - sig)))  # silu'(a) = s (1 + a (1 - s))
        del sig
        flat_ga = grad_a.reshape(-1, grad_a.shape[-1])
        flat_x = x.to(dtype).reshape(-1, x.shape[-1])
        grad_w1 = (flat_ga.t() @ flat_x).to(w1.dtype)
        grad_b1 = flat_ga.sum(0).to(w1.dtype) if ctx.has_bias[0] else None
        grad_x = (grad_a @ w1.to(dtype)).to(x.dtype) if ctx.needs_input_grad[0] else None
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2


def silu_mlp(
    x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None
) -> Tensor:
    """``F.linear(F.silu(F.linear(x, w1, b1)), w2, b2)``: x (..., M), w1 (F, M), w2 (M, F) ->
    (..., M), saving one (..., F) tensor for the backward pass (none when no grad is needed)."""
    if not torch.is_grad_enabled() or not (
        x.requires_grad or w1.requires_grad or w2.requires_grad
    ):
        return F.linear(F.silu(F.linear(x, w1, b1)), w2, b2)
    return _SiluMlp.apply(x, w1, b1, w2, b2)
