"""Streaming decoding in PyTorch: the encoder chunk by chunk (:mod:`w2vbert.model.streaming`)
and a search that carries its state across chunks.

Shapes: N batch, T fbank frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from w2vbert.decoding.search import greedy_search_chunk, greedy_start
from w2vbert.model.streaming import chunk_frames, encode_chunk, start_stream, stream_chunks


@torch.no_grad()
def streaming_greedy_search(
    model: nn.Module,
    x: Tensor,
    x_lens: Tensor,
    chunk_size: int,
    left_chunks: int,
    unk_id: int | None = None,
) -> list[list[int]]:
    """Greedy search of a padded batch fed chunk by chunk, as a streaming recogniser would.

    Args:
        model: a :class:`~w2vbert.model.transducer.Transducer` with a streamable encoder.
        x: (N, T, 80) fbank; x_lens: (N,) valid frames.
        chunk_size: encoder steps per chunk; left_chunks: chunks of left context (-1 = all).
        unk_id: treated as blank (sherpa-onnx's rule).
    Returns:
        N token-id lists; equal to greedy search over ``model.encoder(x, x_lens,
        chunk_size=chunk_size, left_chunks=left_chunks)``.
    """
    encoder = model.encoder
    stream = start_stream(encoder, x.size(0), chunk_size, left_chunks, x.device, x.dtype)
    state = greedy_start(model, x.size(0), x.device)
    for chunk, lens in stream_chunks(x, x_lens, chunk_frames(encoder, chunk_size)):
        out, out_lens, stream = encode_chunk(encoder, stream, chunk, lens)
        state = greedy_search_chunk(model, out, out_lens, state, unk_id)
    return state.hyps
