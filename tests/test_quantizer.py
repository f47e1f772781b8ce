"""Gumbel vector quantizer."""

import math

import pytest
import torch

from w2vbert.model.quantizer import GumbelVectorQuantizer, gumbel_temperature


@pytest.fixture(autouse=True)
def deterministic_rng():
    torch.manual_seed(7)


def _quantizer(groups: int = 2, entries: int = 8, dim: int = 6) -> GumbelVectorQuantizer:
    return GumbelVectorQuantizer(
        input_dim=12, num_codebooks=groups, num_entries=entries, codebook_dim=dim
    )


def _codebook_lookup(q: GumbelVectorQuantizer, ids: torch.Tensor) -> torch.Tensor:
    """(*, G) ids -> (*, C) by a plain loop over codebooks."""
    parts = [q.codebooks[g][ids[..., g]] for g in range(q.num_codebooks)]
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize("training", [True, False])
def test_quantizer_shapes_and_codevectors_equal_the_chosen_entries(training):
    q = _quantizer().train(training)
    out = q(torch.randn(3, 5, 12))
    assert out.quantized.shape == (3, 5, 6)
    assert out.code_ids.shape == (3, 5, 2) and out.code_ids.dtype == torch.int64
    assert out.code_probs.shape == (2, 8)
    torch.testing.assert_close(out.code_probs.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(out.quantized, _codebook_lookup(q, out.code_ids), atol=1e-6, rtol=0)


def test_eval_codes_are_the_argmax_of_the_logits():
    q = _quantizer().eval()
    x = torch.randn(4, 12)
    out = q(x)
    assert torch.equal(out.code_ids, q.weight_proj(x).view(4, 2, 8).argmax(dim=-1))


def test_straight_through_gradient_reaches_the_logit_projection_and_codebooks():
    q = _quantizer().train()
    q(torch.randn(10, 12)).quantized.square().sum().backward()
    assert q.weight_proj.weight.grad is not None and q.weight_proj.weight.grad.abs().sum() > 0
    assert q.codebooks.grad is not None and q.codebooks.grad.abs().sum() > 0


def test_temperature_anneals_from_max_by_decay_per_step_down_to_min():
    q = GumbelVectorQuantizer(
        input_dim=4, num_codebooks=1, num_entries=4, codebook_dim=4,
        max_temp=2.0, min_temp=0.5, temp_decay=0.999995,
    )  # fmt: skip
    assert q.temperature == 2.0
    q.set_num_updates(100_000)
    assert q.temperature == pytest.approx(2.0 * 0.999995**100_000)
    assert q(torch.randn(2, 4)).temperature == q.temperature
    q.set_num_updates(10_000_000)
    assert q.temperature == 0.5
    assert gumbel_temperature(0, 2.0, 0.5, 0.9) == 2.0


def test_perplexity_and_usage_count_only_valid_steps():
    q = _quantizer(groups=1, entries=4, dim=4).eval()
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    x = torch.randn(2, 3, 12)
    out = q(x)
    # Every step picks entry 3: one of four codes used, hard perplexity 1.
    assert out.code_usage.item() == pytest.approx(0.25)
    assert out.code_perplexity.item() == pytest.approx(1.0, abs=1e-4)
    probs = torch.softmax(torch.tensor([0.0, 0.0, 0.0, 5.0]), 0)
    expected = math.exp(-(probs * probs.log()).sum().item())
    assert out.prob_perplexity.item() == pytest.approx(expected, rel=1e-4)

    with torch.no_grad():  # a padded step with another code must not count
        q.weight_proj.weight[0, 0] = 100.0
    x = torch.zeros(1, 2, 12)
    x[0, 1, 0] = 1.0
    padded = q(x, padding_mask=torch.tensor([[False, True]]))
    assert padded.code_ids[0, 1, 0].item() == 0
    assert padded.code_usage.item() == pytest.approx(0.25)


def test_uniform_soft_codes_have_the_maximum_perplexity():
    q = _quantizer(groups=2, entries=8, dim=4).eval()
    with torch.no_grad():
        q.weight_proj.weight.zero_()
    out = q(torch.randn(5, 12))
    assert out.prob_perplexity.item() == pytest.approx(16.0, rel=1e-4)


def test_quantizer_rejects_codebook_dim_not_divisible_by_groups():
    with pytest.raises(
        ValueError, match=r"`codebook_dim` \(7\) must be a multiple of `num_codebooks` \(2\)"
    ):
        GumbelVectorQuantizer(input_dim=4, num_codebooks=2, num_entries=4, codebook_dim=7)
