"""Exact streaming inference of a :class:`~w2vbert.model.w2vbert.W2VBertEncoder`, chunk by chunk.

The encoder trained (or decoded) with chunked attention (``encoder(x, x_lens, chunk_size=C,
left_chunks=L)``) gives the same outputs when fed C steps at a time here, from caches laid out
as sherpa-onnx's online conformer transducer keeps them (``online-conformer-transducer-model.cc``):
``attn`` (blocks, L * C, N, M), each block's attention *inputs* at the last ``L * C`` steps (keys
and values are recomputed from them; with ``L = -1`` the cache grows with every chunk), ``conv``
(blocks, K - 1, N, M), the last K - 1 inputs of each causal depthwise convolution, and
``processed`` (N,), the frames fed so far, which masks the cached steps before the start. Plus
the front end's cache (one fbank frame and one conv1 output for the conv2d front end; nothing
for the stacked one). Needs an encoder whose config passes
:func:`w2vbert.model.config.streaming_problems`; eval mode.

A padded batch streams in lock step: chunk k holds frames ``[k * F, (k + 1) * F)`` of every
utterance, F = ``frame_stride * C`` (:func:`chunk_frames`), with its valid frame count per
utterance (0 once an utterance has ended).

Shapes: N batch, F frames per chunk, C steps per chunk, M model dim, L cached steps, K conv kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from w2vbert.model.chunking import FULL_CONTEXT, check_chunking
from w2vbert.model.masking import make_padding_mask
from w2vbert.model.w2vbert import W2VBertEncoder


@dataclass(frozen=True)
class EncoderStream:
    """What the encoder carries from one chunk to the next."""

    chunk_size: int
    """C, encoder steps per chunk."""
    left_chunks: int
    """Chunks of left context each chunk attends (-1 = all)."""
    processed: Tensor
    """(N,) int64 valid fbank frames fed so far."""
    frontend: tuple[Tensor, ...]
    """The front end's cache (``empty_cache``/``forward_chunk``)."""
    attn: Tensor
    """(B, L, N, M) attention inputs of the last L steps, per block (contrastive, then MLM)."""
    conv: Tensor
    """(B, K - 1, N, M) conv module history, per block."""


def _blocks(encoder: W2VBertEncoder) -> list:
    return list(encoder.contrastive.blocks) + list(encoder.mlm.blocks)


def chunk_frames(encoder: W2VBertEncoder, chunk_size: int) -> int:
    """Fbank frames per chunk of ``chunk_size`` steps."""
    return encoder.feature_encoder.frame_stride * chunk_size


def start_stream(
    encoder: W2VBertEncoder,
    batch_size: int,
    chunk_size: int,
    left_chunks: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> EncoderStream:
    """The stream before its first chunk. ``chunk_size`` must be a positive number of steps."""
    check_chunking(chunk_size, left_chunks)
    if chunk_size == FULL_CONTEXT:
        raise ValueError(
            "`chunk_size` must be a positive number of steps for streaming, but is -1."
        )
    device = torch.device(device)
    frontend = encoder.feature_encoder.empty_cache(batch_size, device, dtype)
    blocks = _blocks(encoder)
    for block in blocks:
        if not block.conv.causal:
            raise ValueError(
                "Streaming needs a causal conv module (`conv_causal=True`): a centred kernel "
                f"of {block.conv.depthwise.kernel_size[0]} reads future steps."
            )
    dim = encoder.output_dim
    history = blocks[0].conv.depthwise.kernel_size[0] - 1 if blocks else 0
    cached = 0 if left_chunks == FULL_CONTEXT else left_chunks * chunk_size
    zeros = lambda steps: torch.zeros(
        len(blocks), steps, batch_size, dim, device=device, dtype=dtype
    )  # noqa: E731
    processed = torch.zeros(batch_size, dtype=torch.int64, device=device)
    return EncoderStream(
        chunk_size, left_chunks, processed, frontend, zeros(cached), zeros(history)
    )


@torch.no_grad()
def encode_chunk(
    encoder: W2VBertEncoder, stream: EncoderStream, x: Tensor, x_lens: Tensor
) -> tuple[Tensor, Tensor, EncoderStream]:
    """Encode one chunk.

    Args:
        x: (N, F, 80) the chunk's fbank frames, F = :func:`chunk_frames`.
        x_lens: (N,) valid frames in the chunk.

    Returns:
        encoder_out (N, C, M), encoder_out_lens (N,) valid steps in the chunk, the next stream.
    """
    if encoder.training:
        raise ValueError("Streaming runs in eval mode (call encoder.eval()).")
    c = stream.chunk_size
    frames = chunk_frames(encoder, c)
    if x.dim() != 3 or x.size(1) != frames:
        raise ValueError(
            f"`x` must be (N, {frames}, F) (chunk of {c} steps), but has shape {tuple(x.shape)}."
        )
    fe = encoder.feature_encoder
    seqs, frontend = fe.forward_chunk(x, x_lens, stream.frontend)  # (N, C, M)
    seq_lens = fe.output_lengths(x_lens)  # (N,) valid steps of this chunk
    n, cached = x.size(0), stream.attn.size(1)
    chunk_valid = ~make_padding_mask(seq_lens, c)  # (N, C)
    steps_done = torch.div(stream.processed, fe.frame_stride, rounding_mode="floor")  # (N,)
    # cached step i is step (steps_done - L + i): before the start while i < L - steps_done
    cache_valid = torch.arange(cached, device=x.device).unsqueeze(0) >= (
        cached - steps_done
    ).unsqueeze(1)
    key_valid = torch.cat((cache_valid, chunk_valid), dim=1)  # (N, L + C)
    # a padded query attends every key (finite values; offline it is unspecified too)
    attn_mask = key_valid.view(n, 1, 1, cached + c) | ~chunk_valid.view(n, 1, c, 1)
    valid = chunk_valid.unsqueeze(2).to(seqs.dtype)  # (N, C, 1)
    attn = [a.transpose(0, 1) for a in stream.attn.unbind(0)]  # per block (N, L, M)
    conv = [h.permute(1, 2, 0) for h in stream.conv.unbind(0)]  # per block (N, M, K - 1)
    split = len(encoder.contrastive.blocks)
    seqs, attn_in1, conv1 = encoder.contrastive.forward_chunk(
        seqs, attn_mask, valid, attn[:split], conv[:split]
    )
    seqs, attn_in2, conv2 = encoder.mlm.forward_chunk(
        seqs, attn_mask, valid, attn[split:], conv[split:]
    )
    keep = cached + c if stream.left_chunks == FULL_CONTEXT else cached
    new_attn = [
        torch.cat((a, b), dim=1)[:, cached + c - keep :] for a, b in zip(attn, attn_in1 + attn_in2)
    ]
    next_stream = replace(
        stream,
        processed=stream.processed + x_lens,
        frontend=frontend,
        attn=torch.stack([a.transpose(0, 1) for a in new_attn]) if new_attn else stream.attn,
        conv=torch.stack([h.permute(2, 0, 1) for h in conv1 + conv2]) if new_attn else stream.conv,
    )
    return seqs, seq_lens, next_stream


def stream_chunks(x: Tensor, x_lens: Tensor, frames: int) -> list[tuple[Tensor, Tensor]]:
    """Cut a padded batch (N, T, F), (N,) into chunks of ``frames`` frames (the last one padded
    with zeros) and their valid frame counts."""
    num_chunks = max(-(-int(x_lens.max()) // frames), 1) if x.size(0) > 0 else 0
    x = torch.nn.functional.pad(x, (0, 0, 0, max(num_chunks * frames - x.size(1), 0)))
    out = []
    for k in range(num_chunks):
        lens = (x_lens - k * frames).clamp(min=0, max=frames)
        out.append((x[:, k * frames : (k + 1) * frames], lens))
    return out


def stream_encode(
    encoder: W2VBertEncoder, x: Tensor, x_lens: Tensor, chunk_size: int, left_chunks: int
) -> tuple[Tensor, Tensor]:
    """A whole padded batch through :func:`encode_chunk`, chunk after chunk.

    Returns:
        encoder_out (N, S, M) and encoder_out_lens (N,), S = the offline number of steps;
        equal to ``encoder(x, x_lens, chunk_size=..., left_chunks=...)`` at valid steps.
    """
    stream = start_stream(encoder, x.size(0), chunk_size, left_chunks, x.device, x.dtype)
    outs = []
    for chunk, lens in stream_chunks(x, x_lens, chunk_frames(encoder, chunk_size)):
        out, _, stream = encode_chunk(encoder, stream, chunk, lens)
        outs.append(out)
    out_lens = encoder.output_lengths(x_lens)
    return torch.cat(outs, dim=1)[:, : int(out_lens.max())], out_lens
