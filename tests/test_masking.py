"""Span masking and padding masks."""

import pytest
import torch

from w2vbert.model.masking import compute_span_mask, effective_span_lens, make_padding_mask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_make_padding_mask_is_true_exactly_at_and_beyond_the_length():
    mask = make_padding_mask(torch.tensor([3, 0, 5]), 5)
    expected = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert make_padding_mask(torch.tensor([2, 4])).shape == (2, 4)


def test_masked_fraction_of_long_sequences_matches_one_minus_one_minus_p_to_the_span():
    lens = torch.full((8,), 5000)
    mask = compute_span_mask(lens, 5000, 0.065, 10, generator=_gen())
    expected = 1 - (1 - 0.065) ** 10  # 0.4897
    assert mask.float().mean().item() == pytest.approx(expected, abs=0.02)


def test_span_mask_never_lands_beyond_the_valid_length_and_has_at_least_one_span():
    lens = torch.tensor([1, 2, 3, 7, 10, 19, 20, 57, 200, 0])
    for seed in range(50):
        mask = compute_span_mask(lens, 200, 0.065, 10, generator=_gen(seed))
        assert not (mask & make_padding_mask(lens, 200)).any()
        num_masked = mask.sum(dim=1)
        assert (num_masked[lens > 0] >= 1).all()
        assert num_masked[lens == 0].sum() == 0


def test_short_sequences_keep_at_least_half_of_their_steps_visible_with_one_span():
    lens = torch.tensor([2, 3, 6, 11, 19])
    mask = compute_span_mask(lens, 19, 0.0, 10, generator=_gen())  # only the forced span
    assert torch.equal(mask.sum(dim=1), effective_span_lens(lens, 10))
    assert (mask.sum(dim=1) <= (lens + 1) // 2).all()
    single = compute_span_mask(torch.tensor([1]), 1, 0.065, 10, generator=_gen())
    assert single.tolist() == [[True]]


def test_spans_are_contiguous_runs_of_span_len_when_p_is_tiny():
    lens = torch.full((200,), 100)
    mask = compute_span_mask(lens, 100, 1e-9, 10, generator=_gen())
    assert torch.equal(mask.sum(dim=1), torch.full((200,), 10))
    starts = mask.float().argmax(dim=1)
    for row, start in zip(mask, starts.tolist()):
        assert row[start : start + 10].all()
    # Every start position in [0, 90] is reachable, so both edges of the sequence get masked.
    assert mask[:, 0].any() and mask[:, 99].any()


def test_min_num_spans_gives_every_sequence_that_many_spans_when_they_do_not_overlap():
    lens = torch.full((50,), 1000)
    mask = compute_span_mask(lens, 1000, 0.0, 1, min_num_spans=3, generator=_gen())
    assert (mask.sum(dim=1) >= 1).all() and (mask.sum(dim=1) <= 3).all()
    assert mask.sum(dim=1).float().mean() > 2.9


def test_span_mask_is_reproducible_with_a_generator():
    lens = torch.tensor([40, 33])
    a = compute_span_mask(lens, 40, 0.065, 10, generator=_gen(3))
    b = compute_span_mask(lens, 40, 0.065, 10, generator=_gen(3))
    assert torch.equal(a, b)


def test_compute_span_mask_raises_for_bad_arguments_naming_each():
    with pytest.raises(ValueError, match="`mask_p` must be in .*`span_len` must be >= 1"):
        compute_span_mask(torch.tensor([5]), 5, 1.5, 0)
    with pytest.raises(ValueError, match="must be <= `max_len` \\(4\\)"):
        compute_span_mask(torch.tensor([5]), 4, 0.1, 2)
