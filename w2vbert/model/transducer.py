"""Transducer (RNN-T) model: prediction network, joiner and the model that wires them to an encoder.

Shapes: N batch, T fbank frames, S encoder steps, M encoder dim, U tokens, D decoder dim,
J joiner dim, K vocabulary size.

Context padding (one rule for training, Python decoding and sherpa-onnx): a context position
holding ``-1`` means "before the start of the utterance" and contributes a **zero embedding**.
Training left-pads with zero embeddings (``need_pad=True``), decoding starts from the context
``[-1] * (context_size - 1) + [blank_id]`` (what sherpa-onnx feeds), so the first prediction
sees exactly what it saw in training.

The decoders also offer a small step API used by the searches in :mod:`w2vbert.decoding`:
``initial_state(N)`` -> state, ``step(state, tokens (N,))`` -> ``(decoder_out (N, D), state)``.
A state is a tuple of batch-first tensors, so the searches can index, gather and select it
without knowing the decoder type.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

DecoderState = tuple[Tensor, ...]


def _masked_embedding(embedding: nn.Embedding, y: Tensor) -> Tensor:
    """Embeds ``y`` (N, U) -> (N, U, D); positions with ``y < 0`` give zero vectors."""
    return embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1).to(embedding.weight.dtype)


class Decoder(nn.Module):
    """Stateless prediction network: embedding, grouped Conv1d over ``context_size`` tokens, ReLU.

    The output at position u depends only on tokens u-context_size+1 .. u.
    """

    def __init__(
        self, vocab_size: int, decoder_dim: int, *, blank_id: int = 0, context_size: int = 2
    ) -> None:
        super().__init__()
        if context_size < 1:
            raise ValueError(f"`context_size` must be >= 1, but is {context_size} instead.")
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"`blank_id` must be in [0, {vocab_size}), but is {blank_id} instead.")
        self.vocab_size = vocab_size
        self.decoder_dim = decoder_dim
        self.blank_id = blank_id
        self.context_size = context_size
        self.embedding = nn.Embedding(vocab_size, decoder_dim)
        self.conv: nn.Conv1d | None = None
        if context_size > 1:
            # Grouped (4 channels per group) as icefall: cheap, and enough to mix the context.
            groups = decoder_dim // 4 if decoder_dim % 4 == 0 else 1
            self.conv = nn.Conv1d(
                decoder_dim, decoder_dim, kernel_size=context_size, groups=groups, bias=False
            )

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """
        Args:
            y: (N, U) int64 token ids; ``-1`` = no token (zero embedding).
            need_pad: True in training: left-pad with ``context_size - 1`` zero embeddings so
                that the output has U positions. False in decoding: ``y`` holds exactly
                ``context_size`` tokens and the output has one position.
        Returns:
            (N, U, D) when ``need_pad``, else (N, 1, D).
        """
        if y.dim() != 2:
            raise ValueError(f"`y` must be 2-D (N, U), but has shape {tuple(y.shape)} instead.")
        if not need_pad and y.size(1) != self.context_size:
            raise ValueError(
                f"Without padding `y` must hold context_size={self.context_size} tokens, "
                f"but has {y.size(1)} instead."
            )
        emb = _masked_embedding(self.embedding, y)  # (N, U, D)
        if self.conv is not None:
            emb = emb.permute(0, 2, 1)  # (N, U, D) -> (N, D, U)
            if need_pad:
                emb = F.pad(emb, (self.context_size - 1, 0))  # zero = the -1 embedding
            emb = self.conv(emb).permute(0, 2, 1)  # (N, D, U') -> (N, U', D)
        return F.relu(emb)

    # --- step API for the searches -------------------------------------------------------------

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> DecoderState:
        """The empty context: ``(contexts,)`` with contexts (N, context_size) all ``-1``."""
        return (torch.full((batch_size, self.context_size), -1, dtype=torch.int64, device=device),)

    def step(self, state: DecoderState, tokens: Tensor) -> tuple[Tensor, DecoderState]:
        """Appends ``tokens`` (N,) to each context; returns decoder_out (N, D) and the new state."""
        (contexts,) = state
        contexts = torch.cat([contexts[:, 1:], tokens.reshape(-1, 1).to(contexts)], dim=1)
        return self.forward(contexts, need_pad=False)[:, -1], (contexts,)


class LstmDecoder(nn.Module):
    """The paper's prediction network: embedding + multi-layer LSTM (2 x 640 in the paper).

    Export caveat: sherpa-onnx's offline transducer expects a stateless decoder
    ``decoder(y (N, context_size)) -> (N, D)``; this decoder needs the whole history (or its
    LSTM state), so it cannot be exported in that layout. Use :class:`Decoder` for deployment.
    """

    def __init__(
        self,
        vocab_size: int,
        decoder_dim: int = 640,
        *,
        blank_id: int = 0,
        num_layers: int = 2,
        dropout_p: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"`blank_id` must be in [0, {vocab_size}), but is {blank_id} instead.")
        self.vocab_size = vocab_size
        self.decoder_dim = decoder_dim
        self.blank_id = blank_id
        self.context_size = 1  # what the searches feed per step (the LSTM keeps the rest)
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, decoder_dim)
        self.lstm = nn.LSTM(
            decoder_dim,
            decoder_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout_p if num_layers > 1 else 0.0,
        )

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """(N, U) token ids (``-1`` = zero embedding) -> (N, U, D), from a zero LSTM state.

        ``need_pad`` is accepted for interface compatibility with :class:`Decoder` and ignored.
        """
        if y.dim() != 2:
            raise ValueError(f"`y` must be 2-D (N, U), but has shape {tuple(y.shape)} instead.")
        out, _ = self.lstm(_masked_embedding(self.embedding, y))
        return out

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> DecoderState:
        """``(h, c)``, each (N, num_layers, D) zeros (batch-first, unlike nn.LSTM)."""
        shape = (batch_size, self.num_layers, self.decoder_dim)
        weight = self.embedding.weight
        return (
            torch.zeros(shape, dtype=weight.dtype, device=device),
            torch.zeros(shape, dtype=weight.dtype, device=device),
        )

    def step(self, state: DecoderState, tokens: Tensor) -> tuple[Tensor, DecoderState]:
        """Feeds ``tokens`` (N,); returns decoder_out (N, D) and the new ``(h, c)``."""
        h, c = state
        emb = _masked_embedding(self.embedding, tokens.reshape(-1, 1))  # (N, 1, D)
        # (N, L, D) -> (L, N, D) for nn.LSTM, and back.
        out, (h, c) = self.lstm(
            emb, (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())
        )
        return out[:, -1], (h.transpose(0, 1), c.transpose(0, 1))


class Joiner(nn.Module):
    """logits = output_linear(activation(encoder_proj(enc) + decoder_proj(dec)))."""

    def __init__(
        self,
        encoder_dim: int,
        decoder_dim: int,
        joiner_dim: int,
        vocab_size: int,
        *,
        activation: Literal["tanh", "swish"] = "tanh",
    ) -> None:
        super().__init__()
        if activation not in ("tanh", "swish"):
            raise ValueError(
                f"`activation` must be 'tanh' or 'swish', but is {activation!r} instead."
            )
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.activation: nn.Module = nn.Tanh() if activation == "tanh" else nn.SiLU()
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(
        self, encoder_out: Tensor, decoder_out: Tensor, project_input: bool = True
    ) -> Tensor:
        """
        Args:
            encoder_out: (..., M), or (..., J) when already projected.
            decoder_out: (..., D), or (..., J) when already projected; broadcast against
                ``encoder_out``.
            project_input: False when both inputs already went through ``encoder_proj`` /
                ``decoder_proj`` (the pruned loss and the searches project once).
        Returns:
            (..., K) unnormalised logits.
        """
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)
            decoder_out = self.decoder_proj(decoder_out)
        return self.output_linear(self.activation(encoder_out + decoder_out))


def pad_token_ids(
    y: list[list[int]], pad_value: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``y`` -> (seqs (N, U_max) int64 padded with ``pad_value``, seq_lens (N,) int64)."""
    seq_lens = torch.tensor([len(seq) for seq in y], dtype=torch.int64)
    max_len = int(seq_lens.max()) if len(y) > 0 else 0
    seqs = torch.full((len(y), max_len), pad_value, dtype=torch.int64)
    for i, seq in enumerate(y):
        seqs[i, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
    return seqs.to(device), seq_lens.to(device)


@dataclasses.dataclass
class TransducerOutput:
    """What the transducer computes for a batch, and what its losses need
    (:func:`w2vbert.objectives.rnnt.transducer_loss`). The model computes no loss itself."""

    simple_am: Tensor
    """(N, S, K) encoder logits of the additive ("simple") joiner."""
    simple_lm: Tensor
    """(N, U+1, K) prediction-network logits of the additive joiner."""
    am: Tensor
    """(N, S, J) encoder output after the joiner's ``encoder_proj``."""
    lm: Tensor
    """(N, U+1, J) decoder output after the joiner's ``decoder_proj``."""
    joiner: Callable[[Tensor, Tensor], Tensor]
    """Maps projected (..., J) am and lm (e.g. pruned to (N, S, R, J)) to (..., K) logits."""
    symbols: Tensor
    """(N, U) int64 token ids, padded with ``blank_id``."""
    symbol_lens: Tensor
    """(N,) tokens per utterance."""
    frame_lens: Tensor
    """(N,) valid encoder frames per utterance."""
    blank_id: int
    ctc_log_probs: Tensor | None = None
    """(N, S, K) fp32 log-probabilities of the CTC head, or None when the model has none."""


class Transducer(nn.Module):
    """Encoder + prediction network + joiner; trained with the pruned RNN-T loss (+ optional CTC)
    of :mod:`w2vbert.objectives.rnnt` on its :class:`TransducerOutput`.

    ``simple_am_proj`` / ``simple_lm_proj`` give the "simple" (additive-joiner) logits used for the
    smoothed loss that decides the pruning ranges (icefall's pruned_transducer_stateless design).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Decoder | LstmDecoder,
        joiner: Joiner,
        *,
        encoder_dim: int,
        decoder_dim: int,
        vocab_size: int,
        blank_id: int = 0,
        ctc: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.joiner = joiner
        self.encoder_dim = encoder_dim
        self.decoder_dim = decoder_dim
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.simple_am_proj = nn.Linear(encoder_dim, vocab_size)
        self.simple_lm_proj = nn.Linear(decoder_dim, vocab_size)
        self.ctc_output: nn.Linear | None = nn.Linear(encoder_dim, vocab_size) if ctc else None

    def forward(
        self,
        x: Tensor,
        x_lens: Tensor,
        y: list[list[int]],
        *,
        chunk_size: int = -1,
        left_chunks: int = -1,
    ) -> TransducerOutput:
        """
        Args:
            x: (N, T, 80) fbank features; x_lens: (N,) valid frames.
            y: N token-id sequences (no blank, no sos/eos).
            chunk_size, left_chunks: the encoder's chunked attention (encoder steps, chunks;
                -1 = full context), passed on only when set (dynamic chunk training).
        Returns:
            :class:`TransducerOutput`, what :func:`w2vbert.objectives.rnnt.transducer_loss` needs.
        """
        if len(y) != x.size(0):
            raise ValueError(
                f"`y` must hold {x.size(0)} sequences (batch size), but holds {len(y)}."
            )
        if chunk_size == -1 and left_chunks == -1:
            encoder_out, encoder_out_lens = self.encoder(x, x_lens)  # (N, S, M), (N,)
        else:
            encoder_out, encoder_out_lens = self.encoder(
                x, x_lens, chunk_size=chunk_size, left_chunks=left_chunks
            )
        return self.outputs_from_encoder_out(encoder_out, encoder_out_lens, y)

    def outputs_from_encoder_out(
        self, encoder_out: Tensor, encoder_out_lens: Tensor, y: list[list[int]]
    ) -> TransducerOutput:
        """The part of :meth:`forward` after the encoder: encoder_out (N, S, M), lens (N,)."""
        device = encoder_out.device
        symbols, symbol_lens = pad_token_ids(y, pad_value=self.blank_id, device=device)  # (N, U)
        # Prediction network input: blank as start-of-sequence, then the tokens.
        sos = torch.full((len(y), 1), self.blank_id, dtype=torch.int64, device=device)
        decoder_out = self.decoder(torch.cat([sos, symbols], dim=1), need_pad=True)  # (N, U+1, D)
        ctc_log_probs = None
        if self.ctc_output is not None:
            ctc_log_probs = self.ctc_output(encoder_out).float().log_softmax(dim=-1)
        return TransducerOutput(
            simple_am=self.simple_am_proj(encoder_out),
            simple_lm=self.simple_lm_proj(decoder_out),
            am=self.joiner.encoder_proj(encoder_out),
            lm=self.joiner.decoder_proj(decoder_out),
            # runs in the loss, after forward(): under DDP fine with find_unused_parameters=False
            # (the fine-tuning default), as every parameter still gets its gradient in backward
            joiner=lambda am, lm: self.joiner(am, lm, project_input=False),
            symbols=symbols,
            symbol_lens=symbol_lens,
            frame_lens=encoder_out_lens,
            blank_id=self.blank_id,
            ctc_log_probs=ctc_log_probs,
        )


def create_transducer(
    encoder: nn.Module,
    encoder_dim: int,
    vocab_size: int,
    *,
    decoder_dim: int = 512,
    joiner_dim: int = 512,
    context_size: int = 2,
    blank_id: int = 0,
    decoder_type: Literal["stateless", "lstm"] = "stateless",
    lstm_num_layers: int = 2,
    joiner_activation: Literal["tanh", "swish"] = "tanh",
    ctc: bool = False,
) -> Transducer:
    """Builds a :class:`Transducer` around ``encoder`` (``forward(x, x_lens) -> (N,S,M), (N,)``).

    ``decoder_type="lstm"`` gives the paper's prediction network (use ``decoder_dim=640``);
    ``context_size`` then does not apply. ``joiner_activation="swish"`` is the paper's joint net
    (without its BatchNorm).
    """
    decoder: Decoder | LstmDecoder
    if decoder_type == "stateless":
        decoder = Decoder(vocab_size, decoder_dim, blank_id=blank_id, context_size=context_size)
    elif decoder_type == "lstm":
        decoder = LstmDecoder(
            vocab_size, decoder_dim, blank_id=blank_id, num_layers=lstm_num_layers
        )
    else:
        raise ValueError(
            f"`decoder_type` must be 'stateless' or 'lstm', but is {decoder_type!r} instead."
        )
    joiner = Joiner(encoder_dim, decoder_dim, joiner_dim, vocab_size, activation=joiner_activation)
    return Transducer(
        encoder,
        decoder,
        joiner,
        encoder_dim=encoder_dim,
        decoder_dim=decoder_dim,
        vocab_size=vocab_size,
        blank_id=blank_id,
        ctc=ctc,
    )
