"""Streaming decoding in PyTorch: the encoder chunk by chunk (:mod:`w2vbert.model.streaming`)
and a search that carries its state across chunks.

Shapes: N batch, T fbank frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from w2vbert.decoding.search import (
    beam_best,
    beam_start,
    greedy_search_chunk,
    greedy_start,
    modified_beam_search_chunk,
)
from w2vbert.model.streaming import chunk_frames, encode_chunk, start_stream, stream_chunks


@torch.no_grad()
def streaming_search(
    model: nn.Module,
    x: Tensor,
    x_lens: Tensor,
    chunk_size: int,
    left_chunks: int,
    *,
    method: str = "greedy_search",
    beam: int = 4,
    unk_id: int | None = None,
) -> list[list[int]]:
    """Greedy or modified beam search of a padded batch fed chunk by chunk, as a streaming
    recogniser would: the encoder's caches and the search's hypotheses carried across chunks.

    Args:
        model: a :class:`~w2vbert.model.transducer.Transducer` with a streamable encoder.
        x: (N, T, 80) fbank; x_lens: (N,) valid frames.
        chunk_size: encoder steps per chunk; left_chunks: chunks of left context (-1 = all).
        method: ``"greedy_search"`` or ``"modified_beam_search"`` (``beam`` hypotheses).
        unk_id: treated as blank (sherpa-onnx's rule).
    Returns:
        N token-id lists; equal to the same search over ``model.encoder(x, x_lens,
        chunk_size=chunk_size, left_chunks=left_chunks)``.
    """
    if method not in ("greedy_search", "modified_beam_search"):
        raise ValueError(
            f"`method` must be 'greedy_search' or 'modified_beam_search', but is {method!r}."
        )
    encoder, n = model.encoder, x.size(0)
    stream = start_stream(encoder, n, chunk_size, left_chunks, x.device, x.dtype)
    greedy = method == "greedy_search"
    state = greedy_start(model, n, x.device) if greedy else beam_start(model, n, beam, x.device)
    for chunk, lens in stream_chunks(x, x_lens, chunk_frames(encoder, chunk_size)):
        out, out_lens, stream = encode_chunk(encoder, stream, chunk, lens)
        if greedy:
            state = greedy_search_chunk(model, out, out_lens, state, unk_id)
        else:
            state = modified_beam_search_chunk(model, out, out_lens, state, unk_id)
    return state.hyps if greedy else beam_best(model, state)
