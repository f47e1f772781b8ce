"""The three modules exported for sherpa-onnx's offline transducer, wrapped around a Transducer.

sherpa-onnx (``offline-transducer-model.cc`` and its greedy / modified-beam-search decoders)
runs, per utterance batch::

    encoder_out, encoder_out_lens = encoder(x (N, T, 80) float32, x_lens (N,) int64)
    decoder_out = decoder(y (N, context_size) int64)              # once per emitted token
    logit = joiner(encoder_out[:, t] (N, J), decoder_out (N, J))  # once per frame (and hyp)

It takes the first two inputs/outputs of each session by position, so only the order matters;
it slices ``encoder_out`` frame by frame and repeats frames per hypothesis in beam search, and it
feeds the decoder ``[-1] * (context_size - 1) + [0]`` first (-1 = no token). As icefall does, the
joiner's input projections are moved into the encoder and decoder graphs: the projection runs
once per encoder frame / per new token instead of once per joiner call, and the exported joiner
is only ``output_linear(activation(encoder_out + decoder_out))`` on J-dim inputs.

Shapes: N batch, T fbank frames, S encoder steps, M encoder dim, D decoder dim, J joiner dim,
K vocabulary size.
"""

from __future__ import annotations

from torch import Tensor, nn

from w2vbert.model.transducer import Decoder, Joiner


class OnnxEncoder(nn.Module):
    """``encoder`` then the joiner's ``encoder_proj``: (N, T, 80), (N,) -> (N, S, J), (N,)."""

    def __init__(self, encoder: nn.Module, encoder_proj: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoder_proj = encoder_proj

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (N, T, 80) fbank; x_lens: (N,) int64 valid frames.
        Returns:
            encoder_out (N, S, J) projected for the joiner, encoder_out_lens (N,) int64.
        """
        encoder_out, encoder_out_lens = self.encoder(x, x_lens)  # (N, S, M), (N,)
        return self.encoder_proj(encoder_out), encoder_out_lens.to(x_lens.dtype)


class OnnxDecoder(nn.Module):
    """Stateless decoder on exactly ``context_size`` tokens, then ``decoder_proj``: (N, C) -> (N, J).

    A context position holding -1 gives a zero embedding (what sherpa-onnx's first call feeds).
    """

    def __init__(self, decoder: Decoder, decoder_proj: nn.Linear) -> None:
        super().__init__()
        if not isinstance(decoder, Decoder):
            raise TypeError(
                "sherpa-onnx's offline transducer needs a stateless decoder "
                "(decoder(y (N, context_size)) -> (N, D)), but the model's decoder is "
                f"{type(decoder).__name__} instead; use decoder_type='stateless'."
            )
        self.decoder = decoder
        self.decoder_proj = decoder_proj

    def forward(self, y: Tensor) -> Tensor:
        """(N, context_size) int64 token ids -> decoder_out (N, J)."""
        decoder_out = self.decoder(y, need_pad=False)  # (N, 1, D)
        return self.decoder_proj(decoder_out.squeeze(1))  # (N, 1, D) -> (N, J)


class OnnxJoiner(nn.Module):
    """The joiner on already projected inputs: (N, J), (N, J) -> logit (N, K)."""

    def __init__(self, joiner: Joiner) -> None:
        super().__init__()
        self.joiner = joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """encoder_out (N, J), decoder_out (N, J) -> unnormalised logit (N, K)."""
        return self.joiner(encoder_out, decoder_out, project_input=False)
