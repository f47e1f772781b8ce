"""Attention with Shaw relative-position scores that keeps no (N, H, S, S) tensor for backward.

Shaw's term enters SDPA as an additive float mask built from ``rel`` (N, H, S, P), the scores of
each query with the P offset keys. Because that mask needs a gradient, SDPA takes its math path,
which keeps the softmax probabilities (N, H, S, S) of every block until the backward pass: at
(4, 8, 500, 500) 31 MiB per block, the largest activation of a w2v-BERT 2.0 block. Here the
forward pass is the same SDPA call (so outputs are bit-identical), and the backward pass
recomputes the probabilities from the saved q, k and ``rel`` (one more (S, S) matmul per head),
so only O(N H S (D + P)) is kept per block. Gradients equal autograd's to rounding.

Shapes: q, k, v (N, H, S, D); ``rel`` (N, H, S, P); ``offsets`` (S, S) int64 index into P;
``key_mask`` (N, 1, 1, S) or, with chunked attention, (N, 1, S, S) bool (True = may be attended)
or None. No attention dropout. :func:`shaw_bias` also takes S queries against S' keys (streaming:
offsets (S, S'), key mask (N, 1, S, S')).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def shaw_bias(rel: Tensor, offsets: Tensor, key_mask: Tensor | None) -> Tensor:
    """(N, H, S, S) additive scores: ``rel[..., i, offsets[i, j]]``, -inf at masked keys (masked
    in place: gather makes a new tensor, which its backward does not need)."""
    n, h = rel.shape[:2]
    bias = rel.gather(3, offsets.expand(n, h, *offsets.shape))  # (N, H, S, S')
    if key_mask is not None:
        bias.masked_fill_(~key_mask, float("-inf"))
    return bias


class _ShawAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rel, offsets, key_mask):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=shaw_bias(rel, offsets, key_mask))
        ctx.save_for_backward(q, k, v, rel, offsets, key_mask)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, rel, offsets, key_mask = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        # recompute the probabilities (a half-precision softmax in float32)
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)
        scores += shaw_bias(rel, offsets, key_mask)
        low = scores.dtype in (torch.float16, torch.bfloat16)
        probs = torch.softmax(scores.float() if low else scores, dim=-1).to(q.dtype)
        del scores
        grad_out = grad_out.to(q.dtype)
        grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2))
        # softmax backward: dS = P * (dP - sum_j dP P), in place in dP
        row = (grad_probs * probs).sum(-1, keepdim=True)
        grad_scores = grad_probs.sub_(row).mul_(probs)
        del probs
        grad_q = torch.matmul(grad_scores, k).mul_(scale)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q).mul_(scale)
        n, h = rel.shape[:2]
        index = offsets.expand(n, h, *offsets.shape)
        grad_rel = torch.zeros_like(rel).scatter_add_(3, index, grad_scores)
        return grad_q, grad_k, grad_v, grad_rel, None, None


def shaw_attention(
    q: Tensor, k: Tensor, v: Tensor, rel: Tensor, offsets: Tensor, key_mask: Tensor | None
) -> Tensor:
    """``softmax(q k^T / sqrt(D) + rel[offsets] (+ -inf at masked keys)) v``: (N, H, S, D)."""
    if not torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=shaw_bias(rel, offsets, key_mask))
    return _ShawAttention.apply(q, k, v, rel, offsets, key_mask)
