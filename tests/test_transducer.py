"""Transducer modules: decoder context semantics (-1 padding), step API, joiner, factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2vbert.model.transducer import Decoder, Joiner, LstmDecoder, create_transducer, pad_token_ids


class _StackEncoder(nn.Module):
    """Stand-in encoder: stacks 2 frames (stride 2) and projects: (N, T, F) -> (N, T//2, M)."""

    def __init__(self, feature_dim: int, output_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * feature_dim, output_dim)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        n, t, f = x.shape
        return self.proj(x[:, : t // 2 * 2].reshape(n, t // 2, 2 * f)), x_lens // 2


def _decoder(seed: int = 0, context_size: int = 2) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(vocab_size=9, decoder_dim=8, blank_id=0, context_size=context_size)


def test_minus_one_context_position_contributes_a_zero_embedding() -> None:
    decoder = _decoder()
    token = 5
    out = decoder(torch.tensor([[-1, token]]), need_pad=False)  # (1, 1, D)
    # Hand-computed: grouped conv over the window [0-vector, emb(token)], then ReLU.
    window = torch.stack([torch.zeros(8), decoder.embedding.weight[token]], dim=1)  # (D, 2)
    expected = F.relu(
        F.conv1d(window.unsqueeze(0), decoder.conv.weight, groups=decoder.conv.groups)
    )
    torch.testing.assert_close(out, expected.permute(0, 2, 1))


def test_minus_one_context_differs_from_blank_context() -> None:
    decoder = _decoder()
    minus_one = decoder(torch.tensor([[-1, 3]]), need_pad=False)
    blank = decoder(torch.tensor([[0, 3]]), need_pad=False)
    assert not torch.allclose(minus_one, blank)


def test_all_minus_one_context_gives_zero_output() -> None:
    assert _decoder()(torch.full((2, 2), -1), need_pad=False).abs().sum() == 0


def test_training_padding_equals_sherpa_initial_context() -> None:
    # Training input [blank, y1, ...] with need_pad=True sees the first window [-1, blank],
    # exactly the context sherpa-onnx and our searches start from.
    decoder = _decoder()
    train_out = decoder(torch.tensor([[0, 4, 7]]), need_pad=True)  # (1, 3, D)
    first = decoder(torch.tensor([[-1, 0]]), need_pad=False)
    torch.testing.assert_close(train_out[:, :1], first)


@pytest.mark.parametrize("context_size", [1, 2, 3])
def test_padded_forward_equals_sliding_windows(context_size: int) -> None:
    decoder = _decoder(context_size=context_size)
    y = torch.tensor([[0, 4, 7, 2, 2], [0, 1, 3, 8, 5]])
    out = decoder(y, need_pad=True)  # (N, U, D)
    padded = F.pad(y, (context_size - 1, 0), value=-1)
    for u in range(y.size(1)):
        window = padded[:, u : u + context_size]
        torch.testing.assert_close(out[:, u : u + 1], decoder(window, need_pad=False))


@pytest.mark.parametrize("make", [lambda: _decoder(), lambda: LstmDecoder(9, 8, num_layers=2)])
def test_step_api_reproduces_training_forward(make) -> None:
    torch.manual_seed(1)
    decoder = make().eval()
    y = torch.tensor([[0, 4, 7, 2], [0, 1, 3, 8]])  # blank first, as in training
    expected = decoder(y, need_pad=True)  # (N, U, D)
    state = decoder.initial_state(2)
    for u in range(y.size(1)):
        out, state = decoder.step(state, y[:, u])
        torch.testing.assert_close(out, expected[:, u], rtol=1e-5, atol=1e-6)


def test_decoder_without_padding_rejects_wrong_context_length() -> None:
    with pytest.raises(ValueError, match="must hold context_size=2 tokens, but has 3"):
        _decoder()(torch.tensor([[0, 1, 2]]), need_pad=False)


def test_joiner_without_projection_equals_joiner_on_projected_inputs() -> None:
    torch.manual_seed(2)
    joiner = Joiner(6, 4, 5, 9, activation="swish")
    enc, dec = torch.randn(2, 3, 1, 6), torch.randn(2, 1, 4, 4)
    logits = joiner(enc, dec)  # broadcast -> (2, 3, 4, 9)
    assert logits.shape == (2, 3, 4, 9)
    projected = joiner(joiner.encoder_proj(enc), joiner.decoder_proj(dec), project_input=False)
    torch.testing.assert_close(logits, projected)
    expected = joiner.output_linear(F.silu(joiner.encoder_proj(enc) + joiner.decoder_proj(dec)))
    torch.testing.assert_close(logits, expected)


def test_create_transducer_builds_the_requested_parts() -> None:
    model = create_transducer(
        _StackEncoder(4, 6),
        6,
        9,
        decoder_dim=640,
        joiner_dim=5,
        decoder_type="lstm",
        joiner_activation="swish",
        ctc=True,
    )
    assert isinstance(model.decoder, LstmDecoder) and model.decoder.lstm.num_layers == 2
    assert isinstance(model.joiner.activation, nn.SiLU)
    assert model.ctc_output is not None
    with pytest.raises(ValueError, match="`decoder_type` must be 'stateless' or 'lstm'"):
        create_transducer(_StackEncoder(4, 6), 6, 9, decoder_type="gru")


def test_forward_rejects_wrong_number_of_transcripts() -> None:
    model = create_transducer(_StackEncoder(4, 6), 6, 9, decoder_dim=8, joiner_dim=8)
    with pytest.raises(ValueError, match="must hold 2 sequences"):
        model(torch.randn(2, 10, 4), torch.tensor([10, 8]), [[1, 2]])


def test_pad_token_ids_pads_and_counts() -> None:
    seqs, lens = pad_token_ids([[3, 4, 5], [6]], pad_value=0)
    assert seqs.tolist() == [[3, 4, 5], [6, 0, 0]] and lens.tolist() == [3, 1]
