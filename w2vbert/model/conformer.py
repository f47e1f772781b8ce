"""Conformer blocks with rotary (relative) self-attention through SDPA.

Shapes: N batch, S steps, M model dim, H heads, D head dim (M = H * D).

Block (pre-norm, macaron): ``x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm``.
Positions enter as rotary embeddings on queries and keys (RoFormer): attention scores depend
only on relative offsets, and attention stays one ``scaled_dot_product_attention`` call (its
fused kernels, and a clean ONNX export). The conv module uses LayerNorm (not BatchNorm) so that
outputs do not depend on what else is in the batch, and zeroes padded steps before its depthwise
convolution, so a padded batch gives the same outputs as each sequence alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2vbert.model.dropout import dropout


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
        h = F.silu(self.inner(self.norm(x)))
        if self.inner_dropout_p > 0.0:  # on the wide (N, S, F) tensor: costly on CPU
            h = dropout(h, self.inner_dropout_p, self.training)
        return dropout(self.outer(h), self.dropout_p, self.training)


class RotarySelfAttention(nn.Module):
    """LayerNorm -> fused QKV projection -> rotary on Q, K -> SDPA -> output projection."""

    def __init__(
        self, model_dim: int, num_heads: int, attn_dropout_p: float, dropout_p: float
    ) -> None:
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

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None) -> Tensor:
        """Self-attention.

        Args:
            x: (N, S, M).
            cos, sin: (S, 1, 1, D/2) rotary tables.
            attn_mask: (N, 1, 1, S) bool, ``True`` = key may be attended; ``None`` = all.

        Returns:
            (N, S, M).
        """
        n, s, m = x.shape
        # One permuted view (3, N, H, S, D); split (not slicing) so the backward is one cat
        # instead of zero-filled full-size gradients per slice.
        qkv = self.qkv(self.norm(x)).view(n, s, 3, self.num_heads, self.head_dim)
        qk, v = qkv.permute(2, 0, 3, 1, 4).split((2, 1), dim=0)  # (2, N, H, S, D), (1, N, H, S, D)
        cos_h = cos.reshape(s, -1).to(qkv.dtype)  # (S, D/2)
        sin_h = sin.reshape(s, -1).to(qkv.dtype)
        cos_f = torch.cat((cos_h, cos_h), dim=-1)  # (S, D)
        sin_f = torch.cat((-sin_h, sin_h), dim=-1)  # sign of the rotation folded into the table
        x1, x2 = qk.chunk(2, dim=-1)
        qk = qk * cos_f + torch.cat((x2, x1), dim=-1) * sin_f  # = apply_rotary, two multiplies
        q, k = qk.unbind(0)  # (N, H, S, D) each
        v = v.squeeze(0)
        dropout_p = self.attn_dropout_p if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        h = h.transpose(1, 2).reshape(n, s, m)  # (N, H, S, D) -> (N, S, M)
        return dropout(self.out(h), self.dropout_p, self.training)


class ConvModule(nn.Module):
    """LayerNorm -> Linear(M, 2M) -> GLU -> zero padding -> depthwise Conv1d -> LayerNorm -> SiLU
    -> Linear(M, M) -> dropout."""

    def __init__(self, model_dim: int, kernel_size: int, dropout_p: float) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd and >= 1, but is {kernel_size} instead.")
        self.norm = nn.LayerNorm(model_dim)
        self.pointwise1 = nn.Linear(model_dim, 2 * model_dim)
        self.depthwise = nn.Conv1d(
            model_dim, model_dim, kernel_size, padding=kernel_size // 2, groups=model_dim
        )
        self.depthwise_norm = nn.LayerNorm(model_dim)
        self.pointwise2 = nn.Linear(model_dim, model_dim)
        self.dropout_p = dropout_p

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """(N, S, M) -> (N, S, M); ``valid``: (N, S, 1), 1 at valid steps, or ``None``."""
        h = F.glu(self.pointwise1(self.norm(x)), dim=-1)  # (N, S, 2M) -> (N, S, M)
        if valid is not None:
            h = h * valid
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)  # conv over S on (N, M, S)
        h = self.pointwise2(F.silu(self.depthwise_norm(h)))
        return dropout(h, self.dropout_p, self.training)


class ConformerBlock(nn.Module):
    """Macaron conformer block: FFN/2, rotary MHSA, conv module, FFN/2, final LayerNorm."""

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
    ) -> None:
        super().__init__()
        self.ffn1 = FeedForward(model_dim, ffn_dim, dropout_p, ffn_inner_dropout_p)
        self.attn = RotarySelfAttention(model_dim, num_heads, attn_dropout_p, dropout_p)
        self.conv = ConvModule(model_dim, conv_kernel_size, dropout_p)
        self.ffn2 = FeedForward(model_dim, ffn_dim, dropout_p, ffn_inner_dropout_p)
        self.final_norm = nn.LayerNorm(model_dim)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None, valid: Tensor | None
    ) -> Tensor:
        """(N, S, M) -> (N, S, M); masks as in :class:`ConformerEncoder`."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x, cos, sin, attn_mask)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """A stack of :class:`ConformerBlock` sharing one rotary table; 0 blocks = identity."""

    def __init__(
        self, blocks: list[ConformerBlock], *, head_dim: int, rotary_base: float = 10000.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head_dim = head_dim
        self.rotary_base = rotary_base

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
        cos, sin = rotary_tables(s, self.head_dim, self.rotary_base, seqs.device, seqs.dtype)
        cos = cos.view(s, 1, 1, -1)  # the blocks' contract: (S, 1, 1, D/2)
        sin = sin.view(s, 1, 1, -1)
        if padding_mask is None:
            attn_mask, valid = None, None
        else:
            attn_mask = (~padding_mask).view(n, 1, 1, s)
            valid = (~padding_mask).unsqueeze(2).to(seqs.dtype)  # (N, S, 1)
        for block in self.blocks:
            seqs = block(seqs, cos, sin, attn_mask, valid)
        return seqs
