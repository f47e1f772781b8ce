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

from w2vbert.model.chunking import FULL_CONTEXT, chunk_attention_mask
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
            q, k = _rotate(qk, cos.reshape(s, -1), sin.reshape(s, -1)).unbind(0)  # (N, H, S, D)
        else:
            q, k = qk.unbind(0)
            left, right = self.shaw_window  # type: ignore[misc]
            # scores of every query with each of the P offset keys, then spread over the (S, S)
            # offsets: (N, H, S, D) @ (D, P) -> (N, H, S, P) -> (N, H, S, S)
            rel = self._shaw_scores(q)
            offsets = shaw_offsets(s, left, right, x.device)
            if dropout_p == 0.0:  # the same SDPA call, no (N, H, S, S) tensor kept for backward
                h = shaw_attention(q, k, v, rel, offsets, attn_mask)
            else:
                mask = shaw_bias(rel, offsets, attn_mask)
        if h is None:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        h = h.transpose(1, 2).reshape(n, s, m)  # (N, H, S, D) -> (N, S, M)
        return dropout(self.out(h), self.dropout_p, self.training)

    def _shaw_scores(self, q: Tensor) -> Tensor:
        """(N, H, S, D) queries -> (N, H, S, P) scores with the P relative position keys."""
        assert self.rel_k is not None
        return torch.matmul(q, self.rel_k.weight.to(q.dtype).t()) * self.head_dim**-0.5

    def forward_chunk(
        self,
        x: Tensor,
        cache: Tensor,
        cos: Tensor | None,
        sin: Tensor | None,
        attn_mask: Tensor,
    ) -> Tensor:
        """Self-attention of one chunk over the cached steps and its own (streaming, eval mode).

        Keys and values are recomputed from the cached *inputs* (what sherpa-onnx's one
        (left_context, N, M) cache per layer can hold); positions count from the first cached
        step (scores depend on offsets only).

        Args:
            x: (N, C, M) the chunk's steps.
            cache: (N, L, M) this module's inputs at the L steps before the chunk.
            cos, sin: (L + C, D/2) rotary tables of positions 0 .. L + C - 1 (``None``: Shaw).
            attn_mask: (N, 1, C, L + C) bool, ``True`` = may be attended.

        Returns:
            (N, C, M).
        """
        window = torch.cat((cache, x), dim=1)  # (N, W, M), W = L + C
        n, w, m = window.shape
        c = x.size(1)
        qkv = self.qkv(self.norm(window)).view(n, w, 3, self.num_heads, self.head_dim)
        qk, v = qkv.permute(2, 0, 3, 1, 4).split((2, 1), dim=0)  # (2, N, H, W, D), (1, ...)
        v = v.squeeze(0)
        mask = attn_mask
        if self.rel_k is None:
            assert cos is not None and sin is not None
            q, k = _rotate(qk, cos, sin).unbind(0)
            q = q[:, :, w - c :]  # (N, H, C, D)
        else:
            q, k = qk.unbind(0)
            q = q[:, :, w - c :]
            left, right = self.shaw_window  # type: ignore[misc]
            offsets = shaw_offsets(w, left, right, x.device)[w - c :]  # (C, W)
            mask = shaw_bias(self._shaw_scores(q), offsets, attn_mask)  # (N, H, C, W)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h.transpose(1, 2).reshape(n, c, m)  # (N, H, C, D) -> (N, C, M)
        return self.out(h)


def _rotate(qk: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of stacked queries and keys: (2, N, H, S, D) with (S, D/2) tables."""
    cos_h, sin_h = cos.to(qk.dtype), sin.to(qk.dtype)
    cos_f = torch.cat((cos_h, cos_h), dim=-1)  # (S, D)
    sin_f = torch.cat((-sin_h, sin_h), dim=-1)  # sign of the rotation folded into the table
    x1, x2 = qk.chunk(2, dim=-1)
    return qk * cos_f + torch.cat((x2, x1), dim=-1) * sin_f  # = apply_rotary, two multiplies


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

    def forward_chunk(self, x: Tensor, valid: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk of a causal conv module (streaming, eval mode; the caller checks
        ``causal``).

        Args:
            x: (N, C, M); valid: (N, C, 1), 1 at valid steps.
            cache: (N, M, K - 1) the masked GLU outputs of the K - 1 previous steps (zeros
                before the start: the offline left padding).

        Returns:
            (N, C, M) and the new cache (N, M, K - 1).
        """
        h = F.glu(self.pointwise1(self.norm(x)), dim=-1) * valid  # (N, C, M)
        h = torch.cat((cache, h.transpose(1, 2)), dim=2)  # (N, M, K - 1 + C)
        new_cache = h[:, :, h.size(2) - cache.size(2) :]
        h = self.depthwise(h).transpose(1, 2)  # (N, C, M)
        return self.pointwise2(F.silu(self.depthwise_norm(h))), new_cache


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

    def forward_chunk(
        self,
        x: Tensor,
        cos: Tensor | None,
        sin: Tensor | None,
        attn_mask: Tensor,
        valid: Tensor,
        attn_cache: Tensor,
        conv_cache: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One chunk (N, C, M) -> (N, C, M), the attention input (N, C, M) to cache and the new
        conv cache; arguments as :meth:`RotarySelfAttention.forward_chunk` (``attn_cache``) and
        :meth:`ConvModule.forward_chunk` (``conv_cache``)."""
        x = x + 0.5 * self.ffn1(x)
        attn_input = x
        x = x + self.attn.forward_chunk(x, attn_cache, cos, sin, attn_mask)
        h, conv_cache = self.conv.forward_chunk(x, valid, conv_cache)
        x = x + h
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x), attn_input, conv_cache


def _with_chunks(
    key_mask: Tensor | None,
    padding_mask: Tensor | None,
    chunk_size: int,
    left_chunks: int,
    num_steps: int,
    device: torch.device,
) -> Tensor:
    """The chunk mask (1, 1, S, S) combined with the key mask (N, 1, 1, S): (N, 1, S, S) bool.

    A padded query may attend every key (its output is unspecified anyway): a row with no key
    at all would give NaN, which the next conv module would spread into valid steps.
    """
    allowed = chunk_attention_mask(num_steps, chunk_size, left_chunks, device)
    allowed = allowed.view(1, 1, num_steps, num_steps)
    if key_mask is None or padding_mask is None:
        return allowed
    return (allowed & key_mask) | padding_mask.view(-1, 1, num_steps, 1)


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

    def forward(
        self,
        seqs: Tensor,
        padding_mask: Tensor | None,
        *,
        chunk_size: int = FULL_CONTEXT,
        left_chunks: int = FULL_CONTEXT,
    ) -> Tensor:
        """Encode.

        Args:
            seqs: (N, S, M).
            padding_mask: (N, S) bool, ``True`` = padding; ``None`` if no step is padding.
            chunk_size, left_chunks: streaming attention (:mod:`w2vbert.model.chunking`): each
                query sees its own chunk of ``chunk_size`` steps and ``left_chunks`` chunks
                before it; -1 = full context / all chunks.

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
        if chunk_size != FULL_CONTEXT:
            attn_mask = _with_chunks(
                attn_mask, padding_mask, chunk_size, left_chunks, s, seqs.device
            )
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                seqs = torch.utils.checkpoint.checkpoint(
                    block, seqs, cos, sin, attn_mask, valid, use_reentrant=False
                )
            else:
                seqs = block(seqs, cos, sin, attn_mask, valid)
        return seqs

    def forward_chunk(
        self,
        seqs: Tensor,
        attn_mask: Tensor,
        valid: Tensor,
        attn_caches: list[Tensor],
        conv_caches: list[Tensor],
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """One chunk through every block (streaming, eval mode; :mod:`w2vbert.model.streaming`).

        Args:
            seqs: (N, C, M) the chunk's steps.
            attn_mask: (N, 1, C, L + C) bool, ``True`` = may be attended.
            valid: (N, C, 1), 1 at valid steps.
            attn_caches: per block (N, L, M) attention inputs of the L cached steps.
            conv_caches: per block (N, M, K - 1) conv history.

        Returns:
            (N, C, M), per block the chunk's attention inputs (N, C, M), the new conv caches.
        """
        w = attn_mask.size(-1)
        cos = sin = None
        if len(self.blocks) > 0 and self.blocks[0].attn.rel_k is None:
            cos, sin = rotary_tables(w, self.head_dim, self.rotary_base, seqs.device, seqs.dtype)
        attn_inputs, new_conv = [], []
        for block, attn_cache, conv_cache in zip(self.blocks, attn_caches, conv_caches):
            seqs, attn_input, conv = block.forward_chunk(
                seqs, cos, sin, attn_mask, valid, attn_cache, conv_cache
            )
            attn_inputs.append(attn_input)
            new_conv.append(conv)
        return seqs, attn_inputs, new_conv
