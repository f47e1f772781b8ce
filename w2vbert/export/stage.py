"""Stage 7 as one function: load the fine-tuned (averaged) model, export it, check it with sherpa-onnx.

Outputs in ``out_dir`` (default: the exp dir): ``{encoder,decoder,joiner}-<suffix>[.int8].onnx``,
``tokens.txt``, and with a test set ``export-check-<suffix>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2vbert.checkpoint.selection import CheckpointSelection
from w2vbert.export.check import CheckConfig, run_check, write_check_report
from w2vbert.export.decode_runs import METHODS, load_utterances, read_tokens
from w2vbert.export.onnx_export import export_transducer
from w2vbert.export.onnx_streaming import check_streamable, export_streaming_transducer
from w2vbert.export.streaming_check import run_streaming_check, streaming_report
from w2vbert.model.chunking import chunk_steps
from w2vbert.model.factory import load_transducer
from w2vbert.util.atomic import atomic_write_text
from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    dataclass_from_args,
    flag,
)

logger = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """Flags of ``python -m w2vbert.export_onnx``."""

    exp_dir: Path = flag(Path("exp/finetune"), "Fine-tuning experiment directory (epoch-N.pt files).")
    model: CheckpointSelection = flag(
        CheckpointSelection(), "--epoch/--avg/--use-averaged-model/--checkpoint", flag=False
    )
    tokens: Path | None = flag(
        None, "tokens.txt (default: beside the bpe.model saved in the checkpoint)."
    )
    out_dir: Path | None = flag(None, "Where the ONNX files go (default: --exp-dir).")
    int8: bool = flag(False, "Also write int8 dynamically quantised models (*.int8.onnx).")
    check_cuts: Path | None = flag(
        None, "Cuts (with recordings and text) to decode with sherpa-onnx."
    )
    check_manifest: Path | None = flag(
        None, "Or a recordings manifest (references then come from --decode-dir)."
    )
    decode_dir: Path | None = flag(
        None, "Stage 6's greedy_search dir, to compare with its recogs-* file."
    )
    test_set: str | None = flag(
        None, "Test-set name in stage 6's file names (needed if --decode-dir has several)."
    )
    num_threads: int = flag(1, "Threads for sherpa-onnx and PyTorch in the check.")
    batch_size: int = flag(8, "Utterances decoded together in the check.")
    beam: int = flag(4, "modified_beam_search beam (sherpa-onnx max_active_paths).")
    max_utterances: int = flag(0, "Check at most this many utterances (0: all).")
    strict: bool = flag(
        False, "Exit with an error if a check fails (fp32 greedy differs, int8 WER +0.5)."
    )
    streaming: bool = flag(
        False,
        "Export for sherpa-onnx's online recogniser (*-streaming.onnx, model_type conformer); the "
        "check feeds the audio in 0.1 s pieces and compares with PyTorch's streaming greedy.",
    )
    decode_chunk_size: str | None = flag(
        None,
        "--streaming: chunk in encoder steps or ms (default: the model's smallest trained one).",
    )
    left_context_chunks: int | None = flag(
        None, "--streaming: chunks of left context (default: the model's trained one)."
    )
    allow_offline_model: bool = flag(
        False, "--streaming: export a model trained without chunks anyway (logged warning)."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_dataclass_arguments(parser, cls)
        CheckpointSelection.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ExportOptions":
        return dataclass_from_args(cls, args, model=CheckpointSelection.from_args(args))


def _stage6_recogs(options: ExportOptions, suffix: str) -> dict[str, Path]:
    """Stage 6's recogs files for this model: greedy (required) and modified beam search (if there)."""
    if options.decode_dir is None:
        return {}
    greedy_dir = Path(options.decode_dir)
    name = options.test_set or "*"
    candidates = sorted(greedy_dir.glob(f"recogs-{name}-{suffix}.txt"))
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"Expected one recogs-{name}-{suffix}.txt in {greedy_dir}, but found {[c.name for c in candidates]}; "
            "run stage 6 for this model, or name the set with --test-set."
        )
    found = {"greedy_search": candidates[0]}
    set_name = candidates[0].name[len("recogs-") : -len(f"-{suffix}.txt")]
    beam = (
        greedy_dir.parent
        / "modified_beam_search"
        / f"recogs-{set_name}-{suffix}-beam-size-{options.beam}.txt"
    )
    if beam.is_file():
        found["modified_beam_search"] = beam
    logger.info(f"Comparing with stage 6: {', '.join(str(p) for p in found.values())}")
    return found


STREAMING_ONLY = ("decode_chunk_size", "left_context_chunks", "allow_offline_model")
"""ExportOptions fields that only --streaming reads."""


def run_streaming_export(
    options: ExportOptions, model, params: dict[str, Any], suffix: str
) -> dict[str, Any]:
    """``--streaming``: the online model and its check against PyTorch streaming greedy."""
    check_streamable(params, allow_offline=options.allow_offline_model)
    trained = params.get("streaming") or {"chunk_sizes": [], "left_context_chunks": -1}
    frame_stride = params["model_config"].get("frame_stride", 4)
    chunk = min((c for c in trained["chunk_sizes"] if c > 0), default=None)
    if options.decode_chunk_size is not None:
        chunk = chunk_steps(
            options.decode_chunk_size, 10 * frame_stride, option="--decode-chunk-size"
        )
    if chunk is None:
        raise ValueError(
            "--streaming needs --decode-chunk-size (the model has no trained chunk size)."
        )
    left = options.left_context_chunks
    if left is None:
        left = trained["left_context_chunks"]
        if left == -1:
            raise ValueError(
                "--streaming needs a finite left context (fixed-size caches), but the model was "
                "trained with all of it (-1): give --left-context-chunks N."
            )
    elif left < 1:
        raise ValueError(
            f"--left-context-chunks must be a positive number of chunks with --streaming, but is "
            f"{left}."
        )
    if chunk not in trained["chunk_sizes"]:
        logger.warning(f"--decode-chunk-size {chunk} steps: the model was never trained with it "
                       f"(trained: {trained['chunk_sizes']}).")  # fmt: skip
    tokens = options.tokens or Path(params["bpe_model"]).parent / "tokens.txt"
    out_dir = Path(options.out_dir or options.exp_dir)
    suffix = f"{suffix}-chunk-{chunk}-left-{left}"  # one model per latency: the names say which
    fp32, int8 = export_streaming_transducer(
        model, out_dir, suffix, tokens, chunk_size=chunk, left_chunks=left, int8=options.int8
    )
    files = [str(p) for f in (fp32, int8) if f for p in (f.encoder, f.decoder, f.joiner)]
    out: dict[str, Any] = {"suffix": f"{suffix}-streaming", "files": files + [str(fp32.tokens)]}
    manifest = options.check_cuts or options.check_manifest
    if manifest is None:
        logger.info("No --check-cuts/--check-manifest: skipping the sherpa-onnx online check.")
        return out
    utts = load_utterances(manifest, options.max_utterances)
    result = run_streaming_check(
        model, fp32, int8, utts, read_tokens(fp32.tokens), chunk_size=chunk, left_chunks=left,
        num_threads=options.num_threads, fbank=params["model_config"].get("fbank", "icefall"),
    )  # fmt: skip
    result["step_ms"] = 10 * frame_stride
    name = f"export-check-{suffix}-streaming"
    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out_dir / f"{name}.md", f"# sherpa-onnx online check of {suffix}\n\n"
                      + streaming_report(result))  # fmt: skip
    logger.info(f"Streaming check written to {out_dir / name}.md:\n{streaming_report(result)}")
    if not result["passed"] and options.strict:
        raise RuntimeError(f"The streaming check did not pass (see {out_dir / name}.md).")
    out["check"] = result
    return out


def run_export(options: ExportOptions) -> dict[str, Any]:
    """Exports (and checks, with a test set); returns ``{"suffix", "files", "check"}``."""
    if options.check_cuts is not None and options.check_manifest is not None:
        raise ValueError("Give --check-cuts or --check-manifest, not both.")
    if not options.streaming:
        given = [f"--{name.replace('_', '-')}" for name in STREAMING_ONLY
                 if getattr(options, name) not in (None, False)]  # fmt: skip
        if given:
            raise ValueError(f"{' '.join(given)} only apply with --streaming.")
    state, params = options.model.load(options.exp_dir)
    model, suffix = load_transducer(state, params), options.model.suffix
    if options.streaming:
        return run_streaming_export(options, model, params, suffix)
    tokens = options.tokens or Path(params["bpe_model"]).parent / "tokens.txt"
    out_dir = Path(options.out_dir or options.exp_dir)
    comment = f"w2v-BERT pruned RNN-T, {suffix}, from {options.model.checkpoint or options.exp_dir}"
    fp32, int8 = export_transducer(
        model, out_dir, suffix, tokens, int8=options.int8, comment=comment
    )
    out: dict[str, Any] = {
        "suffix": suffix,
        "files": [str(p) for f in (fp32, int8) if f for p in (f.encoder, f.decoder, f.joiner)]
        + [str(fp32.tokens)],
    }
    manifest = options.check_cuts or options.check_manifest
    if manifest is None:
        logger.info("No --check-cuts/--check-manifest: skipping the sherpa-onnx check.")
        return out
    utts = load_utterances(manifest, options.max_utterances)
    recogs = _stage6_recogs(options, suffix)
    config = CheckConfig(
        num_threads=options.num_threads,
        batch_size=options.batch_size,
        beam=options.beam,
        methods=METHODS,
        fbank=params["model_config"].get("fbank", "icefall"),
    )
    result = run_check(model, fp32, int8, utts, config=config, recogs=recogs)
    result |= {
        "suffix": suffix,
        "manifest": str(manifest),
        "stage6_recogs": {k: str(v) for k, v in recogs.items()},
    }
    json_path, md_path = (
        out_dir / f"export-check-{suffix}.json",
        out_dir / f"export-check-{suffix}.md",
    )
    write_check_report(
        result, json_path, md_path, f"sherpa-onnx check of {suffix} on {Path(manifest).name}"
    )
    logger.info(
        f"Check written to {md_path}: " + ", ".join(f"{k}={v}" for k, v in result["checks"].items())
    )
    for diff in result.get("fp32_greedy_differences_vs_pytorch", []):
        logger.warning(
            f"fp32 greedy differs from PyTorch on {diff['id']}: {diff['reference']!r} -> {diff['other']!r}"
        )
    if not result["passed"]:
        message = f"The sherpa-onnx check did not pass (see {md_path})."
        if options.strict:
            raise RuntimeError(message)
        logger.warning(message)
    out["check"] = result
    return out
