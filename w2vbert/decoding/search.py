"""Transducer searches: batched greedy search, batched modified beam search, k2 fast beam search.

All searches emit at most one symbol per encoder frame (as the models are used in icefall and
sherpa-onnx) and start from the decoder context ``[-1] * (context_size - 1) + [blank_id]``,
which is what training saw (zero-embedding left padding) and what sherpa-onnx feeds.

Shapes: N batch, S encoder steps, M encoder dim, J joiner dim, K vocabulary, B beam.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

State = tuple[Tensor, ...]


class _StepDecoder(Protocol):
    blank_id: int
    context_size: int

    def initial_state(self, batch_size: int, device: torch.device | str = ...) -> State: ...

    def step(self, state: State, tokens: Tensor) -> tuple[Tensor, State]: ...


def _check_encoder_out(encoder_out: Tensor, encoder_out_lens: Tensor) -> None:
    if encoder_out.dim() != 3:
        raise ValueError(
            f"`encoder_out` must be (N, S, M), but has shape {tuple(encoder_out.shape)}."
        )
    if encoder_out_lens.shape != (encoder_out.size(0),):
        raise ValueError(
            f"`encoder_out_lens` must have shape ({encoder_out.size(0)},), "
            f"but has {tuple(encoder_out_lens.shape)}."
        )
    if encoder_out.size(0) > 0 and int(encoder_out_lens.max()) > encoder_out.size(1):
        raise ValueError(
            f"`encoder_out_lens` must not exceed S={encoder_out.size(1)}, "
            f"but its maximum is {int(encoder_out_lens.max())}."
        )


def _sorted_frames(
    encoder_out: Tensor, encoder_out_lens: Tensor
) -> tuple[Tensor, list[int], Tensor]:
    """Sorts utterances by decreasing length.

    Returns (encoder_out sorted (N, S, M), active[t] = number of utterances still running at
    frame t (non-increasing, so the active ones are always a prefix), sort order (N,)).
    """
    lens, order = encoder_out_lens.cpu().sort(descending=True, stable=True)
    frames = torch.arange(encoder_out.size(1))
    active = (lens.unsqueeze(0) > frames.unsqueeze(1)).sum(dim=1).tolist()  # (S,)
    return encoder_out[order.to(encoder_out.device)], active, order


def _unsort(hyps: list[list[int]], order: Tensor) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in hyps]
    for i, j in enumerate(order.tolist()):
        out[j] = hyps[i]
    return out


def _gather_state(state: State, index: Tensor) -> State:
    return tuple(s[index] for s in state)


@dataclass
class GreedyState:
    """What greedy search carries from one chunk of encoder frames to the next (batch order)."""

    hyps: list[list[int]]
    """N token-id lists so far (no blanks)."""
    dec_proj: Tensor
    """(N, J) the decoder output of each hypothesis after the joiner's ``decoder_proj``."""
    decoder_state: State
    """The decoder's state (batch-first tensors)."""


@torch.no_grad()
def greedy_start(
    model: nn.Module, batch_size: int, device: torch.device | str = "cpu"
) -> GreedyState:
    """Greedy search before the first frame: the decoder after the blank context."""
    decoder: _StepDecoder = model.decoder
    blanks = torch.full((batch_size,), decoder.blank_id, dtype=torch.int64, device=device)
    dec_out, state = decoder.step(decoder.initial_state(batch_size, device), blanks)
    return GreedyState([[] for _ in range(batch_size)], model.joiner.decoder_proj(dec_out), state)


@torch.no_grad()
def greedy_search_chunk(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    state: GreedyState,
    unk_id: int | None = None,
) -> GreedyState:
    """Greedy search over one chunk of encoder frames, carrying ``state`` (streaming); over the
    whole utterance at once it is :func:`greedy_search_batch`.

    Args:
        model: a :class:`~w2vbert.model.transducer.Transducer` (uses ``.decoder``, ``.joiner``).
        encoder_out: (N, S, M) frames of this chunk; encoder_out_lens: (N,) valid ones.
        state: from :func:`greedy_start` or the previous chunk.
        unk_id: when given, this token is treated as blank (never emitted nor fed to the
            decoder), as sherpa-onnx does, so that both decode alike.
    Returns:
        The state after the chunk (``.hyps``: the token ids so far).
    """
    _check_encoder_out(encoder_out, encoder_out_lens)
    decoder: _StepDecoder = model.decoder
    joiner = model.joiner
    blank_id = decoder.blank_id
    enc_sorted, active, order = _sorted_frames(encoder_out, encoder_out_lens)
    enc_proj = joiner.encoder_proj(enc_sorted)  # (N, S, J)
    index = order.to(encoder_out.device)
    dec_proj = state.dec_proj[index]  # (N, J) in the sorted order
    dec_state = _gather_state(state.decoder_state, index)
    hyps = [list(state.hyps[i]) for i in order.tolist()]

    for t, num_active in enumerate(active):
        if num_active == 0:
            break
        logits = joiner(
            enc_proj[:num_active, t], dec_proj[:num_active], project_input=False
        )  # (n', K)
        tokens = logits.argmax(dim=-1)  # (n',)
        if unk_id is not None:
            tokens = tokens.masked_fill(tokens == unk_id, blank_id)
        emitted = (tokens != blank_id).nonzero(as_tuple=True)[0]
        if emitted.numel() == 0:
            continue
        for i, tok in zip(emitted.tolist(), tokens[emitted].tolist()):
            hyps[i].append(tok)
        new_out, new_state = decoder.step(_gather_state(dec_state, emitted), tokens[emitted])
        dec_proj = dec_proj.index_copy(0, emitted, joiner.decoder_proj(new_out))
        dec_state = tuple(s.index_copy(0, emitted, ns) for s, ns in zip(dec_state, new_state))
    unsort = torch.argsort(index)
    return GreedyState(_unsort(hyps, order), dec_proj[unsort], _gather_state(dec_state, unsort))


def greedy_search_batch(
    model: nn.Module, encoder_out: Tensor, encoder_out_lens: Tensor, unk_id: int | None = None
) -> list[list[int]]:
    """Greedy search, at most one symbol per frame, batched over utterances.

    Args:
        model: a :class:`~w2vbert.model.transducer.Transducer` (uses ``.decoder``, ``.joiner``).
        encoder_out: (N, S, M); encoder_out_lens: (N,).
        unk_id: when given, this token is treated as blank (never emitted nor fed to the
            decoder), as sherpa-onnx does, so that both decode alike.
    Returns:
        N token-id lists (no blanks), in the input order.
    """
    _check_encoder_out(encoder_out, encoder_out_lens)
    state = greedy_start(model, encoder_out.size(0), encoder_out.device)
    return greedy_search_chunk(model, encoder_out, encoder_out_lens, state, unk_id).hyps


def _merge_candidates(
    seqs: list[tuple[int, ...]],
    scores: list[float],
    srcs: list[int],
    tokens: list[int],
    blank_id: int,
) -> list[tuple[tuple[int, ...], float, int, int]]:
    """Merges candidates that end in the same token sequence (log-add of their scores).

    Returns (sequence, score, source hypothesis, token) per distinct sequence, best first.
    Merged candidates share the sequence, hence the decoder state; the first one's source
    and token are kept.
    """
    merged: dict[tuple[int, ...], list] = {}
    for seq, score, src, tok in zip(seqs, scores, srcs, tokens):
        if score == -math.inf:
            continue
        new_seq = seq if tok == blank_id else seq + (tok,)
        if new_seq in merged:
            entry = merged[new_seq]
            hi, lo = max(entry[1], score), min(entry[1], score)
            entry[1] = hi + math.log1p(math.exp(lo - hi))
        else:
            merged[new_seq] = [new_seq, score, src, tok]
    return sorted((tuple(e) for e in merged.values()), key=lambda e: -e[1])  # type: ignore[misc]


@dataclass
class BeamState:
    """What modified beam search carries from one chunk of encoder frames to the next (batch
    order; hypothesis slot b of utterance i is row ``i * B + b``)."""

    seqs: list[list[tuple[int, ...]]]
    """N x B token sequences (``()`` in an empty slot)."""
    log_probs: Tensor
    """(N, B) log-probabilities; -inf = empty slot."""
    dec_proj: Tensor
    """(N*B, J) decoder outputs after ``decoder_proj``."""
    decoder_state: State
    """The decoder's state, rows N*B."""


@torch.no_grad()
def beam_start(
    model: nn.Module, batch_size: int, beam: int, device: torch.device | str = "cpu"
) -> BeamState:
    """Modified beam search before the first frame: one hypothesis (the blank context) per
    utterance, ``beam - 1`` empty slots."""
    if beam < 1:
        raise ValueError(f"`beam` must be >= 1, but is {beam} instead.")
    start = greedy_start(model, batch_size, device)
    log_probs = torch.full((batch_size, beam), -math.inf, device=device)
    log_probs[:, 0] = 0.0
    return BeamState(
        seqs=[[() for _ in range(beam)] for _ in range(batch_size)],
        log_probs=log_probs,
        dec_proj=start.dec_proj.repeat_interleave(beam, dim=0),
        decoder_state=tuple(s.repeat_interleave(beam, dim=0) for s in start.decoder_state),
    )


def _slot_rows(index: Tensor, beam: int) -> Tensor:
    """(N,) utterance indices -> (N*B,) their hypothesis rows."""
    return (index.unsqueeze(1) * beam + torch.arange(beam, device=index.device)).reshape(-1)


@torch.no_grad()
def modified_beam_search_chunk(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    state: BeamState,
    unk_id: int | None = None,
) -> BeamState:
    """Modified beam search over one chunk of encoder frames, carrying ``state`` (streaming);
    see :func:`modified_beam_search`. encoder_out: (N, S, M); encoder_out_lens: (N,)."""
    _check_encoder_out(encoder_out, encoder_out_lens)
    decoder: _StepDecoder = model.decoder
    joiner = model.joiner
    blank_id, device = decoder.blank_id, encoder_out.device
    beam = state.log_probs.size(1)
    enc_sorted, active, order = _sorted_frames(encoder_out, encoder_out_lens)
    enc_proj = joiner.encoder_proj(enc_sorted)  # (N, S, J)
    index = order.to(device)
    rows_sorted = _slot_rows(index, beam)
    dec_proj = state.dec_proj[rows_sorted]  # (N*B, J) in the sorted order
    dec_state = _gather_state(state.decoder_state, rows_sorted)
    log_probs = state.log_probs[index]  # (N, B)
    seqs = [list(state.seqs[i]) for i in order.tolist()]

    for t, num_active in enumerate(active):
        if num_active == 0:
            break
        rows = num_active * beam
        logits = joiner(
            enc_proj[:num_active, t].repeat_interleave(beam, dim=0),  # (n'*B, J)
            dec_proj[:rows],
            project_input=False,
        )  # (n'*B, K)
        num_tokens = logits.size(-1)
        scores = logits.float().log_softmax(dim=-1).reshape(num_active, beam, num_tokens)
        scores = (scores + log_probs[:num_active].unsqueeze(-1)).reshape(
            num_active, -1
        )  # (n', B*K)
        top_scores, top_idx = scores.topk(min(beam, scores.size(1)), dim=-1)  # (n', B')
        top_src, top_tok = top_idx // num_tokens, top_idx % num_tokens
        if unk_id is not None:
            top_tok = top_tok.masked_fill(top_tok == unk_id, blank_id)

        # Built as Python lists (one transfer per frame, not one per slot on a GPU).
        new_src = list(range(rows))  # default: an empty slot keeps its own state
        new_tok = [blank_id] * rows
        new_log_probs = [[-math.inf] * beam for _ in range(num_active)]
        all_scores, all_src, all_tok = top_scores.tolist(), top_src.tolist(), top_tok.tolist()
        for i in range(num_active):
            merged = _merge_candidates(
                [seqs[i][s] for s in all_src[i]], all_scores[i], all_src[i], all_tok[i], blank_id
            )
            seqs[i] = [() for _ in range(beam)]
            for b, (seq, score, src, tok) in enumerate(merged):
                seqs[i][b] = seq
                new_log_probs[i][b] = score
                new_src[i * beam + b] = i * beam + src
                new_tok[i * beam + b] = tok
        log_probs[:num_active] = torch.tensor(new_log_probs, device=device)
        new_src_t = torch.tensor(new_src, dtype=torch.int64, device=device)
        new_tok_t = torch.tensor(new_tok, dtype=torch.int64, device=device)

        # Reorder the decoder state of the active slots, then advance the emitting ones.
        sub_proj = dec_proj[new_src_t]
        sub_state = _gather_state(tuple(s[:rows] for s in dec_state), new_src_t)
        emitted = (new_tok_t != blank_id).nonzero(as_tuple=True)[0]
        if emitted.numel() > 0:
            out, st = decoder.step(_gather_state(sub_state, emitted), new_tok_t[emitted])
            sub_proj = sub_proj.index_copy(0, emitted, joiner.decoder_proj(out))
            sub_state = tuple(s.index_copy(0, emitted, ns) for s, ns in zip(sub_state, st))
        dec_proj = torch.cat([sub_proj, dec_proj[rows:]])
        dec_state = tuple(torch.cat([ss, s[rows:]]) for ss, s in zip(sub_state, dec_state))

    unsort = torch.argsort(index)
    rows_back = _slot_rows(unsort, beam)
    return BeamState(
        seqs=_unsort(seqs, order),
        log_probs=log_probs[unsort],
        dec_proj=dec_proj[rows_back],
        decoder_state=_gather_state(dec_state, rows_back),
    )


def beam_best(model: nn.Module, state: BeamState) -> list[list[int]]:
    """The best hypothesis of each utterance by log-probability per symbol of the
    context-padded sequence, as icefall's and sherpa-onnx's ``get_most_probable(length_norm=
    True)`` do."""
    context_size = getattr(model.decoder, "context_size", 1)
    lengths = torch.tensor([[context_size + len(seq) for seq in row] for row in state.seqs],
                           dtype=state.log_probs.dtype, device=state.log_probs.device)  # (N, B)
    best = (state.log_probs / lengths).argmax(dim=-1).tolist()
    return [list(state.seqs[i][b]) for i, b in enumerate(best)]


def modified_beam_search(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    beam: int = 4,
    unk_id: int | None = None,
) -> list[list[int]]:
    """Beam search with at most one symbol per frame, batched over utterances and hypotheses.

    At each frame every hypothesis is extended by every token (blank keeps it as it is), the
    ``beam`` best (hypothesis, token) pairs of each utterance survive, and pairs that give the
    same token sequence are merged by log-adding their probabilities.

    Args:
        model: a :class:`~w2vbert.model.transducer.Transducer`.
        encoder_out: (N, S, M); encoder_out_lens: (N,).
        beam: B, hypotheses kept per utterance.
        unk_id: when given, extending by this token counts as blank (sherpa-onnx's rule).
    Returns:
        N token-id lists (the best hypothesis by length-normalised log-probability), in the
        input order.
    """
    if beam < 1:
        raise ValueError(f"`beam` must be >= 1, but is {beam} instead.")
    _check_encoder_out(encoder_out, encoder_out_lens)
    state = beam_start(model, encoder_out.size(0), beam, encoder_out.device)
    state = modified_beam_search_chunk(model, encoder_out, encoder_out_lens, state, unk_id)
    return beam_best(model, state)


def fast_beam_search(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    *,
    beam: float = 20.0,
    max_states: int = 64,
    max_contexts: int = 8,
) -> list[list[int]]:
    """k2's fast beam search (FSA-based, trivial graph) with one-best output.

    Needs k2, a stateless :class:`~w2vbert.model.transducer.Decoder` and ``blank_id == 0``.
    k2 starts from a blank-filled context (not ``[-1, ..., blank]``), as in icefall.
    Not exercised by this project's tests where k2 is absent.
    """
    try:
        import k2  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001 - absent, or built for another torch
        raise RuntimeError(
            "fast_beam_search needs k2, which is not importable here "
            f"({type(e).__name__}: {e}); use greedy_search or modified_beam_search."
        ) from e
    _check_encoder_out(encoder_out, encoder_out_lens)
    decoder = model.decoder
    if not hasattr(decoder, "conv"):
        raise ValueError(
            f"fast_beam_search needs the stateless Decoder, not {type(decoder).__name__}."
        )
    if decoder.blank_id != 0:
        raise ValueError(f"fast_beam_search needs blank_id 0, but it is {decoder.blank_id}.")
    joiner = model.joiner
    vocab_size = decoder.vocab_size
    graph = k2.trivial_graph(vocab_size - 1, device=encoder_out.device)
    config = k2.RnntDecodingConfig(
        vocab_size=vocab_size,
        decoder_history_len=decoder.context_size,
        beam=beam,
        max_contexts=max_contexts,
        max_states=max_states,
    )
    n = encoder_out.size(0)
    streams = k2.RnntDecodingStreams([k2.RnntDecodingStream(graph) for _ in range(n)], config)
    enc_proj = joiner.encoder_proj(encoder_out)  # (N, S, J)
    with torch.no_grad():
        for t in range(encoder_out.size(1)):
            shape, contexts = streams.get_contexts()  # contexts: (num_contexts, context_size)
            contexts = contexts.to(torch.int64)
            dec_proj = joiner.decoder_proj(decoder(contexts, need_pad=False)[:, -1])  # (C, J)
            frame = enc_proj[:, t].index_select(0, shape.row_ids(1).to(torch.int64))  # (C, J)
            logits = joiner(frame, dec_proj, project_input=False)
            streams.advance(logits.float().log_softmax(dim=-1))
        streams.terminate_and_flush_to_streams()
        lattice = streams.format_output(encoder_out_lens.tolist())
        best_path = k2.shortest_path(lattice, use_double_scores=True)
    token_ids = k2.RaggedTensor(best_path.arcs.shape(), best_path.labels).remove_axis(1)
    token_ids = token_ids.remove_values_leq(0)  # drops blank (0) and the final -1
    return token_ids.tolist()
