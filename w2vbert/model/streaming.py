"""Exact streaming inference of a :class:`~w2vbert.model.w2vbert.W2VBertEncoder`, chunk by chunk.

The encoder trained (or decoded) with chunked attention (``encoder(x, x_lens, chunk_size=C,
left_chunks=L)``) gives the same outputs when fed C steps at a time here, from caches: per block
the keys and values of the last ``L * C`` steps (all steps with ``L = -1``) and the last K - 1
inputs of the causal depthwise convolution, plus the front end's cache (one fbank frame and one
conv1 output for the conv2d front end; nothing for the stacked one). Needs an encoder whose
config passes :func:`w2vbert.model.config.streaming_problems`; eval mode.

A batch streams in lock step: chunk k holds frames ``[k * F, (k + 1) * F)`` of every utterance,
F = ``frame_stride * C`` (:func:`chunk_frames`), with its valid frame count per utterance (0 once
an utterance has ended).

Shapes: N batch, F frames per chunk, C steps per chunk, M model dim, L cached steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from w2vbert.model.chunking import FULL_CONTEXT, check_chunking
from w2vbert.model.conformer import LayerCache
from w2vbert.model.masking import make_padding_mask
from w2vbert.model.w2vbert import W2VBertEncoder


@dataclass(frozen=True)
class EncoderStream:
    """What the encoder carries from one chunk to the next (batch-first tensors)."""

    chunk_size: int
    """C, encoder steps per chunk."""
    left_chunks: int
    """Chunks of left context each chunk attends (-1 = all)."""
    frames_done: int
    """Fbank frames fed so far (per utterance, the same for all)."""
    frontend: tuple[Tensor, ...]
    """The front end's cache (``empty_cache``/``forward_chunk``)."""
    key_valid: Tensor
    """(N, L) bool, the cached steps that are not padding."""
    layers: list[LayerCache]
    """Per block (contrastive blocks, then MLM blocks): keys, values (N, H, L, D), conv cache."""


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
        raise ValueError("`chunk_size` must be a positive number of steps for streaming, but is -1.")
    device = torch.device(device)
    frontend = encoder.feature_encoder.empty_cache(batch_size, device, dtype)
    layers = encoder.contrastive.empty_caches(batch_size, device, dtype)
    layers += encoder.mlm.empty_caches(batch_size, device, dtype)
    key_valid = torch.zeros(batch_size, 0, dtype=torch.bool, device=device)
    return EncoderStream(chunk_size, left_chunks, 0, frontend, key_valid, layers)


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
    seqs, frontend = fe.forward_chunk(x, x_lens, stream.frames_done, stream.frontend)
    seq_lens = fe.output_lengths(x_lens)  # (N,) valid steps of this chunk
    chunk_valid = ~make_padding_mask(seq_lens, c)  # (N, C)
    key_valid = torch.cat((stream.key_valid, chunk_valid), dim=1)  # (N, L + C)
    n, cached = key_valid.shape
    steps_done = stream.frames_done // fe.frame_stride
    positions = torch.arange(steps_done + c - cached, steps_done + c, device=x.device)
    # a padded query attends every key (finite values; offline it is unspecified too)
    attn_mask = key_valid.view(n, 1, 1, cached) | ~chunk_valid.view(n, 1, c, 1)
    valid = chunk_valid.unsqueeze(2).to(seqs.dtype)  # (N, C, 1)
    keep = FULL_CONTEXT if stream.left_chunks == FULL_CONTEXT else stream.left_chunks * c
    num_contrastive = len(encoder.contrastive.blocks)
    seqs, contrastive = encoder.contrastive.forward_chunk(
        seqs, positions, attn_mask, valid, stream.layers[:num_contrastive], keep
    )
    seqs, mlm = encoder.mlm.forward_chunk(
        seqs, positions, attn_mask, valid, stream.layers[num_contrastive:], keep
    )
    if keep != FULL_CONTEXT:
        key_valid = key_valid[:, max(cached - keep, 0) :]
    next_stream = replace(
        stream,
        frames_done=stream.frames_done + frames,
        frontend=frontend,
        key_valid=key_valid,
        layers=contrastive + mlm,
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
