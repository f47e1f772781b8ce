"""Conformer blocks with relative-position self-attention through SDPA.

Shapes: N batch, S steps, M model dim, H heads, D head dim (M = H * D), P = L + R + 1 relative
positions of Shaw attention.

Block (pre-norm, macaron): ``x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm``.
Positions enter either as rotary embeddings on queries and keys (RoFormer, the default) or as
Shaw-style relative position keys (Shaw et al. 2018; w2v-BERT 2.0's "conformer_shaw"): a learned
(P, D) table of key embeddings for the offsets ``j - i`` clipped to ``[-L, R]``, whose scores
``q_i . E[clip(j - i)] / sqrt(D)`` are added to the content scores. Either way attention stays
one ``scaled_dot_product_attention`` call (Shaw's term is its additive float mask). The conv
module uses LayerNorm (not BatchNorm) so that outputs do not depend on what else is in the batch,
and zeroes padded steps before its depthwise convolution, so a padded batch gives the same
outputs as each sequence alone; the depthwise convolution is centred or causal (left context
only, w2v-BERT 2.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from w2vbert.model.dropout import dropout
from w2vbert.model.shaw_attention import shaw_attention, shaw_bias
from w2vbert.model.silu_mlp import silu_mlp


def rotary_tables(
    num_steps: int, head_dim: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables of rotary position embeddings.

    Returns:
        cos, sin: each (S, D/2).
    """
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    )
    angles = torch.arange(num_steps, device=device, dtype=torch.float32).unsqueeze(1) * inv_freq
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (i, i + D/2) of the last dim of ``x`` by position-dependent angles.

    Args:
        x: (N, S, ..., D); cos, sin: broadcastable to (N, S, ..., D/2).
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class FeedForward(nn.Module):
    """LayerNorm -> Linear(M, F) -> SiLU -> inner dropout -> Linear(F, M) -> dropout."""

    def __init__(
        self, model_dim: int, ffn_dim: int, dropout_p: float, inner_dropout_p: float
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(model_dim)
        self.inner = nn.Linear(model_dim, ffn_dim)
        self.outer = nn.Linear(ffn_dim, model_dim)
        self.dropout_p = dropout_p
        self.inner_dropout_p = inner_dropout_p

    def forward(self, x: Tensor) -> Tensor:
        """(N, S, M) -> (N, S, M)."""
        if self.inner_dropout_p > 0.0 and self.training:  # on the wide (N, S, F) tensor
            h = F.silu(self.inner(self.norm(x)))
            h = dropout(h, self.inner_dropout_p, self.training)
            return dropout(self.outer(h), self.dropout_p, self.training)
        # one (N, S, F) activation kept for the backward pass instead of two
        h = silu_mlp(self.norm(x), self.inner.weight, self.inner.bias, self.outer.weight, self.outer.bias)
        return dropout(h, self.dropout_p, self.training)


def shaw_offsets(num_steps: int, left: int, right: int, device: torch.device) -> Tensor:
    """(S, S) int64 index into the Shaw table: ``clip(j - i, -left, right) + left``."""
    pos = torch.arange(num_steps, device=device)
    return (pos.unsqueeze(0) - pos.unsqueeze(1)).clamp(-left, right) + left


class RotarySelfAttention(nn.Module):
    """LayerNorm -> fused QKV projection -> positions (rotary on Q, K, or Shaw's relative keys)
    -> SDPA -> output projection."""

    def __init__(
        self,
        model_dim: int,
        num_heads: int,
        attn_dropout_p: float,
        dropout_p: float,
        *,
        shaw_window: tuple[int, int] | None = None,
    ) -> None:
        """
        Args:
            shaw_window: ``(L, R)``: Shaw relative position keys clipped to L steps of left and R
                of right context instead of rotary embeddings; ``None`` = rotary.
        """
        super().__init__()
        if model_dim % num_heads != 0 or (model_dim // num_heads) % 2 != 0:
            raise ValueError(
                f"`model_dim` ({model_dim}) must be a multiple of `num_heads` ({num_heads}) "
                f"with an even head dim, but the head dim is {model_dim / num_heads} instead."
            )
        self.num_heads = num_heads
        self.head_dim = model_dim // num_heads
        self.norm = nn.LayerNorm(model_dim)
        self.qkv = nn.Linear(model_dim, 3 * model_dim)
        self.out = nn.Linear(model_dim, model_dim)
        self.attn_dropout_p = attn_dropout_p
        self.dropout_p = dropout_p
        self.shaw_window = shaw_window
        self.rel_k = None
        if shaw_window is not None:
            left, right = shaw_window
            self.rel_k = nn.Embedding(left + right + 1, self.head_dim)  # shared by the heads

    def forward(
        self, x: Tensor, cos: Tensor | None, sin: Tensor | None, attn_mask: Tensor | None
    ) -> Tensor:
        """Self-attention.

        Args:
            x: (N, S, M).
            cos, sin: (S, 1, 1, D/2) rotary tables (``None`` with Shaw positions).
            attn_mask: (N, 1, 1, S) bool, ``True`` = key may be attended; ``None`` = all.

        Returns:
            (N, S, M).
        """
        n, s, m = x.shape
        # One permuted view (3, N, H, S, D); split (not slicing) so the backward is one cat
        # instead of zero-filled full-size gradients per slice.
        qkv = self.qkv(self.norm(x)).view(n, s, 3, self.num_heads, self.head_dim)
        qk, v = qkv.permute(2, 0, 3, 1, 4).split((2, 1), dim=0)  # (2, N, H, S, D), (1, N, H, S, D)
        v = v.squeeze(0)
        dropout_p = self.attn_dropout_p if self.training else 0.0
        h: Tensor | None = None  # (N, H, S, D)
        mask: Tensor | None = attn_mask
        if self.rel_k is None:
            assert cos is not None and sin is not None
            cos_h = cos.reshape(s, -1).to(qkv.dtype)  # (S, D/2)
            sin_h = sin.reshape(s, -1).to(qkv.dtype)
            cos_f = torch.cat((cos_h, cos_h), dim=-1)  # (S, D)
            sin_f = torch.cat((-sin_h, sin_h), dim=-1)  # sign of the rotation folded into the table
            x1, x2 = qk.chunk(2, dim=-1)
            qk = qk * cos_f + torch.cat((x2, x1), dim=-1) * sin_f  # = apply_rotary, two multiplies
            q, k = qk.unbind(0)  # (N, H, S, D) each
        else:
            q, k = qk.unbind(0)
            left, right = self.shaw_window  # type: ignore[misc]
            # scores of every query with each of the P offset keys, then spread over the (S, S)
            # offsets: (N, H, S, D) @ (D, P) -> (N, H, S, P) -> (N, H, S, S)
            rel = torch.matmul(q, self.rel_k.weight.to(q.dtype).t()) * self.head_dim**-0.5
            offsets = shaw_offsets(s, left, right, x.device)
            if dropout_p == 0.0:  # the same SDPA call, no (N, H, S, S) tensor kept for backward
                h = shaw_attention(q, k, v, rel, offsets, attn_mask)
            else:
                mask = shaw_bias(rel, offsets, attn_mask)
        if h is None:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        h = h.transpose(1, 2).reshape(n, s, m)  # (N, H, S, D) -> (N, S, M)
        return dropout(self.out(h), self.dropout_p, self.training)


class ConvModule(nn.Module):
    """LayerNorm -> Linear(M, 2M) -> GLU -> zero padding -> depthwise Conv1d -> LayerNorm -> SiLU
    -> Linear(M, M) -> dropout.

    ``causal``: the depthwise convolution sees the current and the K - 1 previous steps (padded
    on the left only, w2v-BERT 2.0) instead of a centred window. ``bias``: biases in the two
    pointwise layers and the depthwise convolution (w2v-BERT 2.0 has none).
    """

    def __init__(
        self,
        model_dim: int,
        kernel_size: int,
        dropout_p: float,
        *,
        causal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd and >= 1, but is {kernel_size} instead.")
        self.norm = nn.LayerNorm(model_dim)
        self.pointwise1 = nn.Linear(model_dim, 2 * model_dim, bias=bias)
        self.causal = causal
        self.depthwise = nn.Conv1d(
            model_dim, model_dim, kernel_size, padding=0 if causal else kernel_size // 2,
            groups=model_dim, bias=bias,
        )  # fmt: skip
        self.depthwise_norm = nn.LayerNorm(model_dim)
        self.pointwise2 = nn.Linear(model_dim, model_dim, bias=bias)
        self.dropout_p = dropout_p

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """(N, S, M) -> (N, S, M); ``valid``: (N, S, 1), 1 at valid steps, or ``None``."""
        h = F.glu(self.pointwise1(self.norm(x)), dim=-1)  # (N, S, 2M) -> (N, S, M)
        if valid is not None:
            h = h * valid
        h = h.transpose(1, 2)  # (N, M, S)
        if self.causal:
            h = F.pad(h, (self.depthwise.kernel_size[0] - 1, 0))
        h = self.depthwise(h).transpose(1, 2)  # conv over S
        h = self.pointwise2(F.silu(self.depthwise_norm(h)))
        return dropout(h, self.dropout_p, self.training)


class ConformerBlock(nn.Module):
    """Macaron conformer block: FFN/2, MHSA (rotary or Shaw), conv module, FFN/2, final LayerNorm."""

    def __init__(
        self,
        *,
        model_dim: int,
        num_heads: int,
        ffn_dim: int,
        conv_kernel_size: int,
        dropout_p: float = 0.0,
        attn_dropout_p: float = 0.0,
        ffn_inner_dropout_p: float = 0.0,
        shaw_window: tuple[int, int] | None = None,
        conv_causal: bool = False,
        conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.ffn1 = FeedForward(model_dim, ffn_dim, dropout_p, ffn_inner_dropout_p)
        self.attn = RotarySelfAttention(
            model_dim, num_heads, attn_dropout_p, dropout_p, shaw_window=shaw_window
        )
        self.conv = ConvModule(
            model_dim, conv_kernel_size, dropout_p, causal=conv_causal, bias=conv_bias
        )
        self.ffn2 = FeedForward(model_dim, ffn_dim, dropout_p, ffn_inner_dropout_p)
        self.final_norm = nn.LayerNorm(model_dim)

    def forward(
        self,
        x: Tensor,
        cos: Tensor | None,
        sin: Tensor | None,
        attn_mask: Tensor | None,
        valid: Tensor | None,
    ) -> Tensor:
        """(N, S, M) -> (N, S, M); masks as in :class:`ConformerEncoder`."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x, cos, sin, attn_mask)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """A stack of :class:`ConformerBlock` sharing one rotary table (none when the blocks use Shaw
    positions); 0 blocks = identity."""

    def __init__(
        self, blocks: list[ConformerBlock], *, head_dim: int, rotary_base: float = 10000.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head_dim = head_dim
        self.rotary_base = rotary_base
        self.activation_checkpointing = False
        """Training: recompute each block in the backward pass (set by the training loop)."""

    def forward(self, seqs: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Encode.

        Args:
            seqs: (N, S, M).
            padding_mask: (N, S) bool, ``True`` = padding; ``None`` if no step is padding.

        Returns:
            (N, S, M); values at padded steps are unspecified.
        """
        if len(self.blocks) == 0:
            return seqs
        n, s, _ = seqs.shape
        cos = sin = None
        if self.blocks[0].attn.rel_k is None:
            cos, sin = rotary_tables(s, self.head_dim, self.rotary_base, seqs.device, seqs.dtype)
            cos = cos.view(s, 1, 1, -1)  # the blocks' contract: (S, 1, 1, D/2)
            sin = sin.view(s, 1, 1, -1)
        if padding_mask is None:
            attn_mask, valid = None, None
        else:
            attn_mask = (~padding_mask).view(n, 1, 1, s)
            valid = (~padding_mask).unsqueeze(2).to(seqs.dtype)  # (N, S, 1)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                seqs = torch.utils.checkpoint.checkpoint(
                    block, seqs, cos, sin, attn_mask, valid, use_reentrant=False
                )
            else:
                seqs = block(seqs, cos, sin, attn_mask, valid)
        return seqs
