"""Export a streaming Transducer for sherpa-onnx's online recogniser (``OnlineRecognizer``,
encoder metadata ``model_type`` = ``conformer``).

The contract, from sherpa-onnx's ``online-conformer-transducer-model.{h,cc}`` and
``online-recognizer-transducer-impl.h`` (and icefall's ``pruned_transducer_stateless5/
export-onnx-streaming.py``, which writes the same layout):

- encoder inputs, by position: ``x`` (N, T, 80) float32 fbank frames, ``cached_attn``
  (num_encoder_layers, left_context, N, encoder_dim), ``cached_conv`` (num_encoder_layers,
  cnn_module_kernel - 1, N, encoder_dim), ``processed_frames`` (N,) int64 = the 10 ms frames
  consumed before this chunk; outputs ``encoder_out`` (N, T', J), ``new_cached_attn``,
  ``new_cached_conv`` (the states, same shapes). Initial states are zeros; sherpa-onnx batches
  streams by concatenating the states on dim 2.
- encoder metadata read: ``num_encoder_layers``, ``T`` (frames fed per call), ``decode_chunk_len``
  (frames the stream then advances), ``left_context``, ``encoder_dim``, ``pad_length``,
  ``cnn_module_kernel``; decoder metadata ``vocab_size``, ``context_size``. A chunk is run once
  ``processed + T < frames ready``.
- the decoder and joiner are those of the offline export (projections moved out of the joiner),
  except that the online greedy search starts from the context ``[0] * context_size`` (blank, not
  ``[-1, ..., 0]``): :class:`OnnxStreamingDecoder` reads a blank followed by a blank as -1, which
  gives the training-time context (a real context never holds two blanks).

What the graph keeps in its caches is ours: ``cached_attn[b]`` holds block b's attention inputs
at the last ``left_context`` steps and ``cached_conv[b]`` its conv history
(:mod:`w2vbert.model.streaming`); the conv2d front end's cache (one normalised frame, one conv1
output) goes into as many extra "layers" of both states as it needs (none for the stacked one).
The front end has no look-ahead, so ``T = decode_chunk_len = frame_stride * chunk_size`` and
``pad_length = 0``: the algorithmic latency is one chunk.

Shapes: N streams, C steps per chunk, B conformer blocks, L cached steps, M encoder dim,
J joiner dim.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from w2vbert.export.onnx_export import (
    EXPORT_VERSION,
    ExportedFiles,
    _export,
    add_metadata,
    export_joiner,
    quantize_files,
    start_export,
)
from w2vbert.export.onnx_modules import OnnxDecoder
from w2vbert.model.chunking import FULL_CONTEXT, check_chunking
from w2vbert.model.config import streaming_problems
from w2vbert.model.streaming import EncoderStream, chunk_frames, encode_chunk, start_stream
from w2vbert.model.transducer import Transducer

logger = logging.getLogger(__name__)

ONLINE_MODEL_TYPE = "conformer"
"""Encoder metadata ``model_type`` that makes sherpa-onnx use its online conformer transducer."""


class OnnxStreamingEncoder(nn.Module):
    """One chunk of the streaming encoder + ``encoder_proj`` in sherpa-onnx's state layout."""

    def __init__(
        self, encoder: nn.Module, encoder_proj: nn.Linear, chunk_size: int, left_chunks: int
    ) -> None:
        super().__init__()
        check_chunking(chunk_size, left_chunks, option="--decode-chunk-size")
        if chunk_size == FULL_CONTEXT or left_chunks == FULL_CONTEXT:
            raise ValueError(
                "A sherpa-onnx online model needs a positive chunk size and a finite left context "
                f"(fixed-size caches), but has chunk {chunk_size}, left context {left_chunks}."
            )
        self.encoder = encoder
        self.encoder_proj = encoder_proj
        self.chunk_size = chunk_size
        self.left_chunks = left_chunks
        self.frames = chunk_frames(encoder, chunk_size)
        self.left_context = left_chunks * chunk_size
        probe = start_stream(encoder, 1, chunk_size, left_chunks)
        self.num_blocks, _, _, self.dim = probe.attn.shape
        self.conv_history = probe.conv.size(1)
        self.frontend_shapes = [t.shape[1:] for t in probe.frontend]  # per stream
        self.frontend_size = sum(int(torch.Size(s).numel()) for s in self.frontend_shapes)
        per_layer = (self.left_context + self.conv_history) * self.dim
        self.extra_layers = -(-self.frontend_size // per_layer)  # ceil: 0 without a front-end cache

    def initial_states(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Zeros, as sherpa-onnx's ``GetEncoderInitStates``."""
        layers = self.num_blocks + self.extra_layers
        return (
            torch.zeros(layers, self.left_context, batch_size, self.dim),
            torch.zeros(layers, self.conv_history, batch_size, self.dim),
        )

    def forward(
        self, x: Tensor, cached_attn: Tensor, cached_conv: Tensor, processed_frames: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            x: (N, T, 80) the chunk's fbank frames.
            cached_attn: (B + 1, L, N, M); cached_conv: (B + 1, K - 1, N, M).
            processed_frames: (N,) int64 frames consumed before this chunk.
        Returns:
            encoder_out (N, C, J), new_cached_attn, new_cached_conv.
        """
        n, b = x.size(0), self.num_blocks
        # the front end's cache: the first values of the extra layers of both states, per stream
        slots = torch.cat((cached_attn[b:].permute(2, 0, 1, 3).reshape(n, -1),
                           cached_conv[b:].permute(2, 0, 1, 3).reshape(n, -1)), dim=1)  # fmt: skip
        frontend, start = [], 0
        for shape in self.frontend_shapes:
            size = int(torch.Size(shape).numel())
            frontend.append(slots[:, start : start + size].reshape(n, *shape))
            start += size
        stream = EncoderStream(
            chunk_size=self.chunk_size,
            left_chunks=self.left_chunks,
            processed=processed_frames,
            frontend=tuple(frontend),
            attn=cached_attn[:b],
            conv=cached_conv[:b],
        )
        x_lens = torch.full((n,), self.frames, dtype=torch.int64, device=x.device)
        out, _, stream = encode_chunk(self.encoder, stream, x, x_lens)
        if self.extra_layers == 0:  # the stacked front end keeps nothing
            return self.encoder_proj(out), stream.attn, stream.conv
        packed = torch.cat([t.reshape(n, -1) for t in stream.frontend]
                           + [slots[:, self.frontend_size :]], dim=1)  # fmt: skip
        e, split = self.extra_layers, self.extra_layers * self.left_context * self.dim
        new_attn = packed[:, :split].reshape(n, e, self.left_context, self.dim).permute(1, 2, 0, 3)
        new_conv = packed[:, split:].reshape(n, e, self.conv_history, self.dim).permute(1, 2, 0, 3)
        return (
            self.encoder_proj(out),
            torch.cat((stream.attn, new_attn), dim=0),
            torch.cat((stream.conv, new_conv), dim=0),
        )


class OnnxStreamingDecoder(OnnxDecoder):
    """:class:`OnnxDecoder` that reads sherpa-onnx's online start context ``[0, ..., 0]`` as the
    training one ``[-1, ..., -1, 0]``: a blank followed by a blank is "no token"."""

    def forward(self, y: Tensor) -> Tensor:
        """(N, context_size) int64 -> (N, J)."""
        if y.size(1) > 1:
            padding = (y[:, :-1] == 0) & (y[:, 1:] == 0)  # (N, context_size - 1)
            y = torch.cat((y[:, :-1].masked_fill(padding, -1), y[:, -1:]), dim=1)
        return super().forward(y)


def export_streaming_transducer(
    model: Transducer,
    out_dir: Path | str,
    suffix: str,
    tokens: Path | str,
    *,
    chunk_size: int,
    left_chunks: int,
    int8: bool = False,
    comment: str = "",
) -> tuple[ExportedFiles, ExportedFiles | None]:
    """Exports ``model`` for sherpa-onnx's online recogniser as ``{encoder,decoder,joiner}-
    <suffix>-streaming.onnx`` (+ ``.int8.onnx``) and copies ``tokens`` into ``out_dir``.

    ``chunk_size`` (encoder steps) and ``left_chunks`` (chunks, finite) fix the caches. The
    model's encoder must be streamable (:func:`w2vbert.model.config.streaming_problems`).
    """
    name = f"{suffix}-streaming"
    fp32 = start_export(model, out_dir, name, tokens)
    encoder = OnnxStreamingEncoder(
        model.encoder, model.joiner.encoder_proj, chunk_size, left_chunks
    )
    with torch.no_grad():
        x = torch.randn(2, encoder.frames, 80)
        attn, conv = encoder.initial_states(2)
        processed = torch.tensor([0, 4 * encoder.frames], dtype=torch.int64)
        axes = {"x": {0: "N"}, "cached_attn": {2: "N"}, "cached_conv": {2: "N"},
                "processed_frames": {0: "N"}, "encoder_out": {0: "N"},
                "new_cached_attn": {2: "N"}, "new_cached_conv": {2: "N"}}  # fmt: skip
        _export(encoder.eval(), (x, attn, conv, processed), fp32.encoder,
                ["x", "cached_attn", "cached_conv", "processed_frames"],
                ["encoder_out", "new_cached_attn", "new_cached_conv"], axes)  # fmt: skip
        add_metadata(fp32.encoder, {
            "model_type": ONLINE_MODEL_TYPE, "version": EXPORT_VERSION,
            "comment": comment or "w2v-BERT streaming encoder + joiner encoder_proj",
            "num_encoder_layers": encoder.num_blocks + encoder.extra_layers, "T": encoder.frames,
            "decode_chunk_len": encoder.frames, "left_context": encoder.left_context,
            "encoder_dim": encoder.dim, "pad_length": 0,
            "cnn_module_kernel": encoder.conv_history + 1, "chunk_size": chunk_size,
            "left_context_chunks": left_chunks,
            "frame_stride": model.encoder.feature_encoder.frame_stride,
        })  # fmt: skip
        decoder = OnnxStreamingDecoder(model.decoder, model.joiner.decoder_proj).eval()
        y = torch.zeros(2, model.decoder.context_size, dtype=torch.int64)
        _export(
            decoder,
            (y,),
            fp32.decoder,
            ["y"],
            ["decoder_out"],
            {"y": {0: "N"}, "decoder_out": {0: "N"}},
        )
        add_metadata(
            fp32.decoder,
            {"vocab_size": model.vocab_size, "context_size": model.decoder.context_size},
        )
        export_joiner(model, fp32.joiner)
    logger.info(f"Exported the streaming model ({chunk_size} steps per chunk, {left_chunks} left "
                f"chunks): {fp32.sizes()} bytes")  # fmt: skip
    return fp32, (quantize_files(fp32, name) if int8 else None)


def check_streamable(params: dict, *, allow_offline: bool) -> None:
    """Refuse (or, with ``allow_offline``, warn about) exporting as streaming a model whose
    encoder was not trained with chunks or cannot stream."""
    from w2vbert.model.factory import config_from_params

    problems = streaming_problems(config_from_params(params))
    if problems:
        raise ValueError("The model's encoder cannot stream: " + " ".join(problems))
    if "streaming" not in params:
        message = ("The model was trained without chunks (no --chunk-sizes): exported as a "
                   "streaming model it runs with attention it never saw.")  # fmt: skip
        if not allow_offline:
            raise ValueError(message + " Pass --allow-offline-model to export it anyway.")
        logger.warning(message)
