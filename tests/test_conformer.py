"""Feature encoder and conformer blocks: shapes, lengths, rotary attention, batch consistency."""

import math

import pytest
import torch

from w2vbert.model.conformer import (
    ConformerBlock,
    ConformerEncoder,
    RotarySelfAttention,
    apply_rotary,
    rotary_tables,
)
from w2vbert.model.feature_encoder import FbankFeatureEncoder, min_input_frames, output_lengths
from w2vbert.model.masking import make_padding_mask


@pytest.fixture(autouse=True)
def deterministic_rng():
    torch.manual_seed(1234)


def _encoder(
    num_layers: int = 2, dim: int = 32, heads: int = 4, kernel: int = 5
) -> ConformerEncoder:
    blocks = [
        ConformerBlock(model_dim=dim, num_heads=heads, ffn_dim=2 * dim, conv_kernel_size=kernel)
        for _ in range(num_layers)
    ]
    return ConformerEncoder(blocks, head_dim=dim // heads).eval()


@pytest.mark.parametrize("frame_stride", [4, 2])
def test_feature_encoder_output_lengths_match_the_actual_outputs(frame_stride):
    enc = FbankFeatureEncoder(model_dim=24, num_channels=4, frame_stride=frame_stride).eval()
    for num_frames in (1, 2, 3, 4, 5, 7, 8, 9, 100, 101):
        seqs, seq_lens = enc(torch.randn(1, num_frames, 80), torch.tensor([num_frames]))
        assert seqs.shape == (1, math.ceil(num_frames / frame_stride), 24)
        assert seq_lens.item() == seqs.size(1) == output_lengths(num_frames, frame_stride)
    assert torch.equal(output_lengths(torch.tensor([1000, 999, 1]), 4), torch.tensor([250, 250, 1]))
    assert output_lengths(1000, 2) == 500


def test_min_input_frames_is_the_smallest_input_giving_the_requested_steps():
    for stride in (2, 4):
        for steps in (1, 2, 5, 30):
            frames = min_input_frames(steps, stride)
            assert output_lengths(frames, stride) >= steps
            assert output_lengths(frames - 1, stride) < steps


@pytest.mark.parametrize("input_norm", ["utterance", "frame", "none"])
def test_feature_encoder_ignores_padding_and_matches_each_item_alone(input_norm):
    enc = FbankFeatureEncoder(model_dim=16, num_channels=4, input_norm=input_norm).eval()
    lens = torch.tensor([37, 50, 9])
    x = torch.randn(3, 50, 80) * 3 + 5
    x = x.masked_fill(make_padding_mask(lens, 50).unsqueeze(2), -23.0)  # odd padding value
    seqs, seq_lens = enc(x, lens)
    for i, n in enumerate(lens.tolist()):
        alone, alone_lens = enc(x[i : i + 1, :n], lens[i : i + 1])
        assert alone_lens.item() == seq_lens[i].item()
        torch.testing.assert_close(seqs[i, : alone.size(1)], alone[0], atol=1e-5, rtol=1e-5)


def test_feature_encoder_rejects_wrong_number_of_bins():
    enc = FbankFeatureEncoder(model_dim=16, num_channels=4)
    with pytest.raises(ValueError, match=r"`x` must be \(N, T, 80\), but has shape \(2, 10, 40\)"):
        enc(torch.randn(2, 10, 40), torch.tensor([10, 10]))


def test_rotary_scores_depend_only_on_the_relative_offset():
    head_dim = 8
    cos, sin = rotary_tables(64, head_dim, 10000.0, torch.device("cpu"), torch.float32)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(i: int, j: int) -> float:
        return float(apply_rotary(q, cos[i], sin[i]) @ apply_rotary(k, cos[j], sin[j]))

    assert score(3, 10) == pytest.approx(score(40, 47), rel=1e-4, abs=1e-5)
    assert score(5, 5) == pytest.approx(float(q @ k), rel=1e-4, abs=1e-5)


def test_rotary_attention_equals_a_hand_written_masked_softmax_attention():
    attn = RotarySelfAttention(16, 2, 0.0, 0.0).eval()
    n, s, h, d = 2, 7, 2, 8
    x = torch.randn(n, s, 16)
    lens = torch.tensor([7, 4])
    cos, sin = rotary_tables(s, d, 10000.0, x.device, x.dtype)
    keep = ~make_padding_mask(lens, s)
    out = attn(x, cos.view(s, 1, 1, -1), sin.view(s, 1, 1, -1), keep.view(n, 1, 1, s))

    qkv = attn.qkv(attn.norm(x)).view(n, s, 3, h, d)
    expected = torch.empty(n, s, h, d)
    for b in range(n):
        for head in range(h):
            for i in range(s):
                qi = apply_rotary(qkv[b, i, 0, head], cos[i], sin[i])
                scores = torch.stack(
                    [qi @ apply_rotary(qkv[b, j, 1, head], cos[j], sin[j]) for j in range(s)]
                ) / math.sqrt(d)
                scores = scores.masked_fill(~keep[b], float("-inf"))
                expected[b, i, head] = scores.softmax(0) @ qkv[b, :, 2, head]
    expected = attn.out(expected.reshape(n, s, 16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_conformer_encoder_padded_batch_equals_each_item_alone():
    enc = _encoder()
    lens = torch.tensor([12, 20, 5])
    x = torch.randn(3, 20, 32)
    out = enc(x, make_padding_mask(lens, 20))
    assert out.shape == (3, 20, 32)
    for i, n in enumerate(lens.tolist()):
        alone = enc(x[i : i + 1, :n], None)
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_conformer_encoder_with_zero_blocks_is_the_identity():
    enc = ConformerEncoder([], head_dim=8)
    x = torch.randn(2, 5, 16)
    assert enc(x, None) is x


def test_conformer_block_rejects_odd_head_dim_and_even_kernel():
    with pytest.raises(ValueError, match="even head dim"):
        ConformerBlock(model_dim=12, num_heads=4, ffn_dim=8, conv_kernel_size=3)
    with pytest.raises(ValueError, match="`kernel_size` must be odd"):
        ConformerBlock(model_dim=16, num_heads=2, ffn_dim=8, conv_kernel_size=4)


def test_silu_mlp_saves_one_wide_tensor_and_matches_the_composed_modules():
    import torch.nn.functional as F

    from w2vbert.model.silu_mlp import silu_mlp

    torch.manual_seed(0)
    shapes = ((3, 5, 8), (32, 8), (32,), (8, 32), (8,))
    x, w1, b1, w2, b2 = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes)
    assert torch.autograd.gradcheck(silu_mlp, (x[:1, :2], w1, b1, w2, b2))
    xf, w1f, b1f, w2f, b2f = (t.detach().float().requires_grad_() for t in (x, w1, b1, w2, b2))
    ref = F.linear(F.silu(F.linear(xf, w1f, b1f)), w2f, b2f)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        out = silu_mlp(xf, w1f, b1f, w2f, b2f)
    assert torch.equal(out, ref)  # the same ops in the same order
    assert [s for s in saved if len(s) == 3 and s[-1] == 32] == [(3, 5, 32)]  # one (N, S, F), not two
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, (xf, w1f, b1f, w2f, b2f), g),
                    torch.autograd.grad(out, (xf, w1f, b1f, w2f, b2f), g)):  # fmt: skip
        assert torch.allclose(a, b, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as nn.Linear under autocast
        low = silu_mlp(xf, w1f, b1f, w2f, b2f)
        low_ref = F.linear(F.silu(F.linear(xf, w1f, b1f)), w2f, b2f)
    assert low.dtype == torch.bfloat16 and torch.equal(low, low_ref)
    (gw1,) = torch.autograd.grad(low.float().sum(), (w1f,))
    assert gw1.dtype == torch.float32


def test_shaw_attention_keeps_no_score_matrix_and_matches_autograd_through_sdpa():
    import torch.nn.functional as F

    from w2vbert.model.conformer import shaw_offsets
    from w2vbert.model.shaw_attention import shaw_attention

    torch.manual_seed(0)
    n, h, s, d, left, right = 2, 3, 7, 4, 3, 2
    q, k, v = (torch.randn(n, h, s, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rel = torch.randn(n, h, s, left + right + 1, dtype=torch.float64, requires_grad=True)
    offsets = shaw_offsets(s, left, right, q.device)
    keys = torch.ones(n, 1, 1, s, dtype=torch.bool)
    keys[1, ..., 5:] = False  # padding of the second sequence

    def reference(q, k, v, rel):  # autograd through SDPA with the bias as its mask
        bias = rel.gather(3, offsets.expand(n, h, s, s)).masked_fill(~keys, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        out = shaw_attention(q, k, v, rel, offsets, keys)
    assert not [x for x in saved if tuple(x[-2:]) == (s, s) and len(x) == 4]  # no (N, H, S, S)
    ref = reference(q, k, v, rel)
    assert torch.allclose(out, ref, atol=1e-14)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (q, k, v, rel), g), torch.autograd.grad(ref, (q, k, v, rel), g)):
        assert torch.allclose(a, b, atol=1e-13)
    assert torch.autograd.gradcheck(lambda *t: shaw_attention(*t, offsets, keys), (q, k, v, rel))
