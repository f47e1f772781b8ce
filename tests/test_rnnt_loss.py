"""Pruned RNN-T loss: against the backend's full loss, gradients, autocast, warm-up scales."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from w2vbert.model.transducer import create_transducer, pad_token_ids
from w2vbert.objectives.rnnt import (
    full_rnnt_loss,
    pruned_rnnt_loss,
    rnnt_loss_scales,
    transducer_loss,
)
from w2vbert.objectives.rnnt_backend import backend, backend_name

# The pruned and the full loss run the same fp32 recursion; they differ by summation order only.
RTOL, ATOL = 1e-5, 1e-4


class _StackEncoder(nn.Module):
    """Stand-in encoder: stacks 2 frames (stride 2) and projects: (N, T, F) -> (N, T//2, M)."""

    def __init__(self, feature_dim: int, output_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * feature_dim, output_dim)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        n, t, f = x.shape
        x = x[:, : t // 2 * 2].reshape(n, t // 2, 2 * f)  # (N, T, F) -> (N, T/2, 2F)
        return self.proj(x), x_lens // 2


def _random_problem(seed: int, n: int = 3, s: int = 12, u: int = 4, j: int = 8, k: int = 6):
    g = torch.Generator().manual_seed(seed)
    am = torch.randn(n, s, j, generator=g)
    lm = torch.randn(n, u + 1, j, generator=g)
    w = torch.randn(j, k, generator=g)
    symbol_lens = torch.tensor([u, u - 1, 1][:n])
    frame_lens = torch.tensor([s, s - 3, s - 5][:n])
    symbols = torch.randint(1, k, (n, u), generator=g)
    return am, lm, w, symbols, symbol_lens, frame_lens


def _joiner(w: Tensor):
    return lambda am, lm: torch.tanh(am + lm) @ w


def test_pruned_loss_with_range_covering_all_symbols_equals_full_loss() -> None:
    am, lm, w, symbols, symbol_lens, frame_lens = _random_problem(seed=0)
    u = symbols.size(1)
    _, pruned = pruned_rnnt_loss(
        simple_am=am @ w,
        simple_lm=lm @ w,
        am=am,
        lm=lm,
        joiner=_joiner(w),
        symbols=symbols,
        symbol_lens=symbol_lens,
        frame_lens=frame_lens,
        prune_range=u + 1,
    )
    logits = _joiner(w)(am.unsqueeze(2), lm.unsqueeze(1))  # (N, S, U+1, K)
    full = backend.rnnt_loss(
        logits=logits,
        symbols=symbols,
        termination_symbol=0,
        boundary=torch.stack(
            [torch.zeros_like(symbol_lens), torch.zeros_like(symbol_lens), symbol_lens, frame_lens],
            1,
        ),
        reduction="sum",
    )
    torch.testing.assert_close(pruned, full, rtol=RTOL, atol=ATOL)


def test_pruned_loss_with_narrow_range_is_not_below_full_loss() -> None:
    # Pruning removes alignment paths, so the pruned loss upper-bounds the full one.
    am, lm, w, symbols, symbol_lens, frame_lens = _random_problem(seed=1, u=6, s=14)
    kwargs = dict(symbols=symbols, symbol_lens=symbol_lens, frame_lens=frame_lens)
    _, pruned = pruned_rnnt_loss(
        simple_am=am @ w, simple_lm=lm @ w, am=am, lm=lm, joiner=_joiner(w), prune_range=2, **kwargs
    )
    full = full_rnnt_loss(_joiner(w)(am.unsqueeze(2), lm.unsqueeze(1)), **kwargs)
    assert pruned.item() >= full.item() - ATOL
    assert pruned.item() > full.item() + 1e-3  # and prunes something here


def test_model_pruned_loss_equals_full_loss_of_its_joiner() -> None:
    torch.manual_seed(2)
    model = create_transducer(_StackEncoder(10, 16), 16, vocab_size=7, decoder_dim=8, joiner_dim=12)
    x, x_lens = torch.randn(2, 20, 10), torch.tensor([20, 14])
    y = [[1, 2, 3], [4, 5]]
    loss = transducer_loss(model(x, x_lens, y), prune_range=4)
    enc, enc_lens = model.encoder(x, x_lens)
    symbols, symbol_lens = pad_token_ids(y, pad_value=0)
    dec = model.decoder(torch.cat([torch.zeros(2, 1, dtype=torch.int64), symbols], 1))
    logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (N, S, U+1, K)
    full = full_rnnt_loss(logits, symbols, symbol_lens, enc_lens)
    torch.testing.assert_close(loss.pruned, full, rtol=RTOL, atol=ATOL)
    assert loss.num_frames == 10 + 7
    assert loss.ctc is None


def test_k2_and_fast_rnnt_give_the_same_pruned_loss() -> None:
    try:
        import fast_rnnt
        import k2
    except Exception:  # noqa: BLE001
        pytest.skip("k2 not importable")
    am, lm, w, symbols, symbol_lens, frame_lens = _random_problem(seed=3)
    boundary = torch.stack(
        [torch.zeros_like(symbol_lens), torch.zeros_like(symbol_lens), symbol_lens, frame_lens], 1
    )
    losses = []
    for lib in (k2, fast_rnnt):
        simple, (px_grad, py_grad) = lib.rnnt_loss_smoothed(
            lm=lm @ w,
            am=am @ w,
            symbols=symbols,
            termination_symbol=0,
            lm_only_scale=0.25,
            am_only_scale=0.0,
            boundary=boundary,
            reduction="sum",
            return_grad=True,
        )
        ranges = lib.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
        am_p, lm_p = lib.do_rnnt_pruning(am, lm, ranges)
        pruned = lib.rnnt_loss_pruned(
            logits=_joiner(w)(am_p, lm_p),
            symbols=symbols,
            ranges=ranges,
            termination_symbol=0,
            boundary=boundary,
            reduction="sum",
        )
        losses.append((simple, pruned))
    torch.testing.assert_close(losses[0], losses[1], rtol=RTOL, atol=ATOL)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(4)
    model = create_transducer(
        _StackEncoder(10, 16), 16, vocab_size=7, decoder_dim=8, joiner_dim=12, ctc=True
    )
    loss = transducer_loss(model(torch.randn(2, 20, 10), torch.tensor([20, 16]), [[1, 2, 3], [6]]))
    (0.5 * loss.simple + loss.pruned + 0.1 * loss.ctc).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm"])
def test_loss_stays_fp32_under_bf16_autocast(decoder_type: str) -> None:
    torch.manual_seed(5)
    model = create_transducer(
        _StackEncoder(10, 16),
        16,
        vocab_size=7,
        decoder_dim=8,
        joiner_dim=12,
        decoder_type=decoder_type,
        ctc=True,
    )
    x, x_lens, y = torch.randn(2, 20, 10), torch.tensor([20, 16]), [[1, 2, 3], [6]]
    reference = transducer_loss(model(x, x_lens, y))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = transducer_loss(model(x, x_lens, y))
    for name in ("simple", "pruned", "ctc"):
        value = getattr(loss, name)
        assert value.dtype == torch.float32, name
        # bf16 projections: about 3 significant digits.
        torch.testing.assert_close(value, getattr(reference, name), rtol=3e-2, atol=0.1)


def test_loss_rejects_frame_lengths_beyond_encoder_output() -> None:
    am, lm, w, symbols, symbol_lens, frame_lens = _random_problem(seed=6)
    with pytest.raises(ValueError, match="must not exceed the 12 frames"):
        pruned_rnnt_loss(
            simple_am=am @ w,
            simple_lm=lm @ w,
            am=am,
            lm=lm,
            joiner=_joiner(w),
            symbols=symbols,
            symbol_lens=symbol_lens,
            frame_lens=frame_lens + 1,
        )


def test_loss_scales_ramp_linearly_during_warm_up() -> None:
    assert rnnt_loss_scales(0, 2000) == (1.0, 0.1)
    simple, pruned = rnnt_loss_scales(1000, 2000, simple_loss_scale=0.5)
    assert simple == pytest.approx(0.75) and pruned == pytest.approx(0.55)
    assert rnnt_loss_scales(2000, 2000) == (0.5, 1.0)
    assert rnnt_loss_scales(10**6, 2000, simple_loss_scale=0.3) == (0.3, 1.0)
    assert rnnt_loss_scales(5, 0) == (0.5, 1.0)


def test_backend_is_named() -> None:
    assert backend_name() in ("k2", "fast_rnnt")
