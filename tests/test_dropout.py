"""w2vbert.model.dropout: keep rate, scaling, gradient, identity outside training."""

from __future__ import annotations

import pytest
import torch

from w2vbert.model.dropout import Dropout, dropout


def test_dropout_keeps_about_1_minus_p_and_scales_kept_values():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    y = dropout(x, 0.3, True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.01)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)  # unbiased, as inverted dropout


def test_dropout_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(30, 40, requires_grad=True)
    y = dropout(x, 0.25, True)
    y.backward(torch.ones_like(y))
    scale = torch.where(y != 0, y / x.detach(), torch.zeros_like(y))
    torch.testing.assert_close(x.grad, scale)


def test_dropout_is_the_identity_when_not_training_or_p_is_0_and_zero_at_p_1():
    x = torch.randn(5, 6)
    assert dropout(x, 0.5, False) is x
    assert dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))
    module = Dropout(0.5).eval()
    assert module(x) is x
    with pytest.raises(ValueError, match="`p` must be in"):
        Dropout(1.5)
