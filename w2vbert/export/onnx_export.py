"""Export a Transducer to ONNX in the sherpa-onnx offline-transducer layout, with metadata and
optional int8 dynamic quantisation.

Files (``suffix`` e.g. ``epoch-30-avg-9-use-averaged-model``)::

    encoder-<suffix>.onnx   x (N, T, 80) float32, x_lens (N,) int64 -> encoder_out (N, S, J), encoder_out_lens (N,)
    decoder-<suffix>.onnx   y (N, context_size) int64 -> decoder_out (N, J)
    joiner-<suffix>.onnx    encoder_out (N, J), decoder_out (N, J) -> logit (N, K)
    *.int8.onnx             the same, MatMul weights quantised to int8 (``int8=True``)
    tokens.txt              copied

Metadata: encoder ``model_type``, ``version``, ``comment`` (+ dims and frame stride, for
people); decoder ``vocab_size``, ``context_size`` (read by sherpa-onnx); joiner ``joiner_dim``.

The TorchScript exporter is used (``dynamo=False``): the dynamo exporter needs ``onnxscript``,
which the recipe's environment does not install, and the TorchScript one exports the encoder's
SDPA + rotary attention with dynamic batch and time as it is.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from w2vbert.export.onnx_modules import OnnxDecoder, OnnxEncoder, OnnxJoiner
from w2vbert.model.transducer import Decoder, Transducer

logger = logging.getLogger(__name__)

MODEL_TYPE = "w2v-bert-rnnt"
"""Encoder metadata ``model_type`` (informational: sherpa-onnx's Python API passes
``model_type="transducer"`` itself)."""
EXPORT_VERSION = "1"
OPSET_VERSION = 17
_TWO_GIB = 2**31


@dataclass(frozen=True, kw_only=True)
class ExportedFiles:
    """Paths of one exported model (fp32 or int8) in the sherpa-onnx layout."""

    encoder: Path
    decoder: Path
    joiner: Path
    tokens: Path

    def sizes(self) -> dict[str, int]:
        """Bytes per file: ``{"encoder": ..., "decoder": ..., "joiner": ..., "total": ...}``."""
        sizes = {
            name: getattr(self, name).stat().st_size for name in ("encoder", "decoder", "joiner")
        }
        sizes["total"] = sum(sizes.values())
        return sizes

    @classmethod
    def named(cls, out_dir: Path, name: str, tokens: Path, *, int8: bool = False) -> ExportedFiles:
        """``{encoder,decoder,joiner}-<name>.onnx`` (``.int8.onnx``) in ``out_dir``."""
        ext = ".int8.onnx" if int8 else ".onnx"
        parts = {part: out_dir / f"{part}-{name}{ext}" for part in ("encoder", "decoder", "joiner")}
        return cls(**parts, tokens=tokens)


def start_export(model: Transducer, out_dir: Path | str, name: str, tokens: Path | str) -> ExportedFiles:
    """Checks what every export needs (``tokens`` lists the model's vocabulary, a decoder that
    exports), puts ``model`` in eval mode, copies ``tokens`` into ``out_dir`` (created) and
    returns the fp32 file names of ``name``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = Path(tokens)
    num_tokens = _count_tokens(tokens)
    if num_tokens != model.vocab_size:
        raise ValueError(
            f"{tokens} must list vocab_size={model.vocab_size} tokens, but lists {num_tokens} instead."
        )
    if not isinstance(model.decoder, Decoder):
        OnnxDecoder(model.decoder, model.joiner.decoder_proj)  # raises, naming the decoder type
    model.eval()
    fp32 = ExportedFiles.named(out_dir, name, out_dir / "tokens.txt")
    if tokens.resolve() != fp32.tokens.resolve():
        shutil.copyfile(tokens, fp32.tokens)
    return fp32


def quantize_files(fp32: ExportedFiles, name: str) -> ExportedFiles:
    """int8 copies (:func:`quantize_int8`) of the three fp32 files, named for ``name``."""
    q = ExportedFiles.named(fp32.encoder.parent, name, fp32.tokens, int8=True)
    for part in ("encoder", "decoder", "joiner"):
        quantize_int8(getattr(fp32, part), getattr(q, part))
    logger.info(f"Quantised to int8: {q.sizes()} bytes")
    return q


def add_metadata(path: Path, metadata: dict[str, str | int]) -> None:
    """Writes ``metadata`` (values as strings) into the ONNX file's ``metadata_props``."""
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.save(model, str(path))


def read_metadata(path: Path | str) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    with warnings.catch_warnings():
        # Input checks in forward() trace to constants, and the exporter's deprecation notice.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET_VERSION,
            do_constant_folding=True,
            dynamo=False,
        )
    if path.stat().st_size >= _TWO_GIB or any(path.parent.glob(f"{path.name}.data")):
        logger.warning(
            f"{path} is over 2 GiB (external data): sherpa-onnx loads models from one buffer and "
            "cannot read it; export with --int8 and use the int8 files."
        )


def export_encoder(
    model: Transducer, path: Path, *, num_mel_bins: int = 80, comment: str = ""
) -> None:
    """Exports ``encoder`` + ``joiner.encoder_proj`` to ``path`` (dynamic batch and time)."""
    module = OnnxEncoder(model.encoder, model.joiner.encoder_proj).eval()
    # Two utterances of different lengths, so that the padding path is what gets traced.
    x = torch.randn(2, 203, num_mel_bins)
    x_lens = torch.tensor([203, 157], dtype=torch.int64)
    _export(
        module,
        (x, x_lens),
        path,
        ["x", "x_lens"],
        ["encoder_out", "encoder_out_lens"],
        {
            "x": {0: "N", 1: "T"},
            "x_lens": {0: "N"},
            "encoder_out": {0: "N", 1: "S"},
            "encoder_out_lens": {0: "N"},
        },
    )
    frame_stride = getattr(getattr(model.encoder, "feature_encoder", None), "frame_stride", 4)
    add_metadata(
        path,
        {
            "model_type": MODEL_TYPE,
            "version": EXPORT_VERSION,
            "comment": comment or "w2v-BERT encoder + joiner encoder_proj (pruned RNN-T)",
            "encoder_dim": model.encoder_dim,
            "joiner_dim": model.joiner.encoder_proj.out_features,
            "feature_dim": num_mel_bins,
            "frame_stride": frame_stride,
        },
    )


def export_decoder(model: Transducer, path: Path) -> None:
    """Exports the stateless decoder + ``joiner.decoder_proj`` to ``path`` (dynamic batch)."""
    module = OnnxDecoder(model.decoder, model.joiner.decoder_proj).eval()  # raises for LSTM
    context_size = model.decoder.context_size
    y = torch.zeros(2, context_size, dtype=torch.int64)
    y[:, :-1] = -1
    _export(module, (y,), path, ["y"], ["decoder_out"], {"y": {0: "N"}, "decoder_out": {0: "N"}})
    add_metadata(path, {"vocab_size": model.vocab_size, "context_size": context_size})


def export_joiner(model: Transducer, path: Path) -> None:
    """Exports the joiner on projected inputs to ``path`` (dynamic batch)."""
    joiner_dim = model.joiner.encoder_proj.out_features
    module = OnnxJoiner(model.joiner).eval()
    encoder_out = torch.randn(3, joiner_dim)
    decoder_out = torch.randn(3, joiner_dim)
    _export(
        module,
        (encoder_out, decoder_out),
        path,
        ["encoder_out", "decoder_out"],
        ["logit"],
        {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
    )
    add_metadata(path, {"joiner_dim": joiner_dim})


def quantize_int8(src: Path, dst: Path) -> None:
    """int8 dynamic quantisation of the MatMul weights (as icefall); keeps the metadata."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantizer logs one INFO line per tensor (to the root logger and its own):
    # raise both to WARNING while it runs.
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        quantize_dynamic(
            model_input=str(src),
            model_output=str(dst),
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
        )
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    missing = {k: v for k, v in read_metadata(src).items() if read_metadata(dst).get(k) != v}
    if missing:
        add_metadata(dst, missing)


def export_transducer(
    model: Transducer,
    out_dir: Path | str,
    suffix: str,
    tokens: Path | str,
    *,
    int8: bool = False,
    comment: str = "",
) -> tuple[ExportedFiles, ExportedFiles | None]:
    """Exports encoder, decoder and joiner of ``model`` and copies ``tokens`` into ``out_dir``.

    Args:
        model: a trained :class:`Transducer` with a stateless decoder (put in eval mode here).
        out_dir: where the files go (created).
        suffix: file-name suffix, e.g. ``epoch-30-avg-9``.
        tokens: the BPE ``tokens.txt`` (``<sym> <id>`` per line, ``<blk>`` = 0).
        int8: also write ``*-<suffix>.int8.onnx``.
        comment: encoder metadata ``comment``.
    Returns:
        (fp32 files, int8 files or None).
    """
    fp32 = start_export(model, out_dir, suffix, tokens)
    with torch.no_grad():
        export_encoder(model, fp32.encoder, comment=comment)
        export_decoder(model, fp32.decoder)
        export_joiner(model, fp32.joiner)
    logger.info(
        f"Exported {fp32.encoder.name}, {fp32.decoder.name}, {fp32.joiner.name}: {fp32.sizes()} bytes"
    )
    return fp32, (quantize_files(fp32, suffix) if int8 else None)


def _count_tokens(tokens: Path) -> int:
    if not tokens.is_file():
        raise FileNotFoundError(f"tokens file {tokens} does not exist.")
    with open(tokens, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
