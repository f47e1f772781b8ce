"""Transducer searches: against naive references, batch consistency, and an overfit model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from w2vbert.decoding.search import (
    fast_beam_search,
    greedy_search_batch,
    modified_beam_search,
)
from w2vbert.model.transducer import Transducer, create_transducer
from w2vbert.objectives.rnnt import rnnt_loss_scales, transducer_loss


class _StackEncoder(nn.Module):
    """Stand-in encoder: stacks 2 frames, then Linear-ReLU-Linear: (N, T, F) -> (N, T//2, M)."""

    def __init__(self, feature_dim: int, output_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * feature_dim, output_dim), nn.ReLU(), nn.Linear(output_dim, output_dim)
        )

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        n, t, f = x.shape
        return self.net(x[:, : t // 2 * 2].reshape(n, t // 2, 2 * f)), x_lens // 2


def _random_model(seed: int, vocab_size: int = 6, decoder_type: str = "stateless") -> Transducer:
    torch.manual_seed(seed)
    model = create_transducer(
        _StackEncoder(4, 8), 8, vocab_size, decoder_dim=8, joiner_dim=8, decoder_type=decoder_type
    )
    with torch.no_grad():  # larger logits, so that random models emit a mix of tokens and blanks
        model.joiner.output_linear.weight.mul_(4.0)
    return model.eval()


def _random_encoder_out(seed: int, lens: list[int], dim: int = 8) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), dim, generator=g), torch.tensor(lens)


def _naive_greedy(model: Transducer, encoder_out: Tensor, length: int) -> list[int]:
    """One utterance (S, M), frame by frame, the full decoder on the literal context each time."""
    decoder, blank = model.decoder, model.blank_id
    context = [-1] * (decoder.context_size - 1) + [blank]
    hyp: list[int] = []
    for t in range(length):
        dec = decoder(torch.tensor([context[-decoder.context_size :]]), need_pad=False)[0, -1]
        token = int(model.joiner(encoder_out[t], dec).argmax())
        if token != blank:
            hyp.append(token)
            context.append(token)
    return hyp


def _exact_best_sequence(model: Transducer, encoder_out: Tensor, length: int) -> list[int]:
    """Sums the probability of all alignments (a symbol or blank per frame) per token sequence;
    the best by log-probability per symbol of the context-padded sequence (icefall's and
    sherpa-onnx's length normalisation)."""
    decoder, blank = model.decoder, model.blank_id
    c = decoder.context_size
    vocab = model.joiner.output_linear.out_features
    log_probs_cache: dict[tuple[int, ...], Tensor] = {}

    def log_probs(t: int, prefix: tuple[int, ...]) -> Tensor:
        key = (t,) + prefix
        if key not in log_probs_cache:
            context = ([-1] * (c - 1) + [blank] + list(prefix))[-c:]
            dec = decoder(torch.tensor([context]), need_pad=False)[0, -1]
            log_probs_cache[key] = model.joiner(encoder_out[t], dec).log_softmax(-1)
        return log_probs_cache[key]

    totals: dict[tuple[int, ...], float] = {}
    for alignment in itertools.product(range(vocab), repeat=length):
        prefix: tuple[int, ...] = ()
        score = 0.0
        for t, token in enumerate(alignment):
            score += float(log_probs(t, prefix)[token])
            if token != blank:
                prefix += (token,)
        totals[prefix] = float(
            torch.logaddexp(torch.tensor(totals.get(prefix, -math.inf)), torch.tensor(score))
        )
    return list(max(totals, key=lambda seq: totals[seq] / (c + len(seq))))


@pytest.mark.parametrize("context_size", [1, 2, 3])
@torch.no_grad()
def test_greedy_search_batch_matches_naive_per_utterance_loop(context_size: int) -> None:
    torch.manual_seed(0)
    model = create_transducer(
        _StackEncoder(4, 8), 8, 6, decoder_dim=8, joiner_dim=8, context_size=context_size
    ).eval()
    model.joiner.output_linear.weight.mul_(4.0)
    encoder_out, lens = _random_encoder_out(1, [9, 4, 12, 7])
    hyps = greedy_search_batch(model, encoder_out, lens)
    expected = [_naive_greedy(model, encoder_out[i], int(lens[i])) for i in range(4)]
    assert hyps == expected
    assert sum(len(h) for h in hyps) > 4  # the random model does emit tokens


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm"])
def test_modified_beam_search_with_beam_one_equals_greedy(decoder_type: str) -> None:
    model = _random_model(2, decoder_type=decoder_type)
    encoder_out, lens = _random_encoder_out(3, [10, 3, 15, 8, 15])
    greedy = greedy_search_batch(model, encoder_out, lens)
    assert modified_beam_search(model, encoder_out, lens, beam=1) == greedy
    assert sum(len(h) for h in greedy) > 5


@pytest.mark.parametrize("search", [greedy_search_batch, modified_beam_search])
def test_batched_search_equals_each_utterance_alone(search) -> None:
    model = _random_model(4)
    encoder_out, lens = _random_encoder_out(5, [6, 11, 2, 11])
    batched = search(model, encoder_out, lens)
    alone = [search(model, encoder_out[i : i + 1, : lens[i]], lens[i : i + 1])[0] for i in range(4)]
    assert batched == alone


@pytest.mark.parametrize("seed", [0, 2])
def test_modified_beam_search_without_pruning_finds_the_most_probable_sequence(seed: int) -> None:
    # With a beam larger than the number of (hypothesis, token) candidates at every frame
    # (at most 4 * 40 here), nothing is pruned and merging by log-add makes each
    # hypothesis score the exact total probability of its token sequence. (With these seeds,
    # merging by max instead of log-add picks a different sequence.)
    model = _random_model(seed, vocab_size=4)
    encoder_out, lens = _random_encoder_out(seed + 100, [4, 3])
    with torch.no_grad():
        expected = [_exact_best_sequence(model, encoder_out[i], int(lens[i])) for i in range(2)]
    assert modified_beam_search(model, encoder_out, lens, beam=256) == expected


def test_fast_beam_search_says_k2_is_needed_when_absent() -> None:
    try:
        import k2  # noqa: F401
    except Exception:  # noqa: BLE001
        model = _random_model(8)
        encoder_out, lens = _random_encoder_out(9, [3])
        with pytest.raises(RuntimeError, match="fast_beam_search needs k2"):
            fast_beam_search(model, encoder_out, lens)
    else:
        pytest.skip("k2 is importable")


def test_search_rejects_lengths_beyond_encoder_output() -> None:
    model = _random_model(10)
    encoder_out, _ = _random_encoder_out(11, [5])
    with pytest.raises(ValueError, match="must not exceed S=5"):
        greedy_search_batch(model, encoder_out, torch.tensor([6]))


@pytest.fixture
def one_thread():
    # Tiny ops: thread hand-offs dominate (300 steps: ~1 s on 1 thread, ~20 s on 2 busy cores).
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


def test_greedy_and_beam_search_recover_transcripts_of_an_overfit_model(one_thread) -> None:
    # Converges (greedy exact) after ~60 steps; 150 leave a margin.
    torch.manual_seed(12)
    transcripts = [[3, 5, 2], [4, 6, 6, 1], [7, 2]]
    x = torch.randn(3, 24, 10)
    x_lens = torch.tensor([24, 20, 16])
    model = create_transducer(_StackEncoder(10, 32), 32, 8, decoder_dim=16, joiner_dim=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(150):
        loss = transducer_loss(model(x, x_lens, transcripts), prune_range=3)
        simple_scale, pruned_scale = rnnt_loss_scales(step, warm_step=50)
        optimizer.zero_grad()
        (simple_scale * loss.simple + pruned_scale * loss.pruned).backward()
        optimizer.step()
    model.eval()
    encoder_out, encoder_out_lens = model.encoder(x, x_lens)
    assert greedy_search_batch(model, encoder_out, encoder_out_lens) == transcripts
    assert modified_beam_search(model, encoder_out, encoder_out_lens, beam=4) == transcripts


def test_unk_is_never_emitted_when_treated_as_blank() -> None:
    """With unk_id, both searches behave as if <unk> were blank (sherpa-onnx's rule)."""
    torch.manual_seed(0)
    model = _random_model_for_unk_test()
    enc = torch.randn(2, 12, 16)
    lens = torch.tensor([12, 9])
    unk = 2
    with torch.no_grad():
        # make <unk> the most likely symbol everywhere
        model.joiner.output_linear.bias.data[unk] += 50.0
        plain = greedy_search_batch(model, enc, lens)
        assert any(unk in h for h in plain)
        for hyps in (greedy_search_batch(model, enc, lens, unk_id=unk),
                     modified_beam_search(model, enc, lens, beam=3, unk_id=unk)):
            assert all(unk not in h for h in hyps)


def _random_model_for_unk_test() -> torch.nn.Module:
    from w2vbert.model.transducer import create_transducer

    return create_transducer(torch.nn.Identity(), 16, 10, decoder_dim=8, joiner_dim=8).eval()
