"""Stage 7's check: decode a test set with sherpa-onnx from the audio and compare with PyTorch.

Runs sherpa-onnx (fp32, and int8 when exported) with greedy_search and modified_beam_search, the
PyTorch model on the same audio (for the RTF and an exact reference), and reads stage 6's
``recogs-*`` files when given. Pass criteria (the issue's): sherpa-onnx fp32 greedy transcripts
identical to PyTorch greedy, int8 greedy WER within 0.5 absolute of PyTorch greedy, and (with
stage 6's files) fp32 greedy WER within 1.0 absolute of stage 6's, whose features are the stored
lilcom-compressed fbank (how many transcripts are identical is reported, not required). Writes
``<exp-dir>/export-check-<suffix>.{json,md}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from w2vbert.decoding.scoring import read_recogs, word_error_rate
from w2vbert.export.decode_runs import (
    METHODS,
    DecodeRun,
    Utterance,
    pytorch_decode,
    read_tokens,
    sherpa_decode,
)
from w2vbert.export.onnx_export import ExportedFiles
from w2vbert.util.atomic import atomic_write_text

logger = logging.getLogger(__name__)

INT8_MAX_WER_INCREASE = 0.5
"""Allowed absolute WER increase (percent) of int8 greedy over PyTorch greedy."""
STAGE6_MAX_WER_DIFFERENCE = 1.0
"""Allowed absolute WER difference (percent) of fp32 greedy vs stage 6's greedy. Not identity:
stage 6 decodes the stored (lilcom-compressed) fbank, the check computes fbank from the samples
as sherpa-onnx does, and a model that listens turns a few near-tied tokens on that difference."""


def differences(
    reference: dict[str, list[str]], other: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Utterances whose word sequences differ: ``[{"id", "reference", "other"}]``, by id."""
    return [
        {"id": k, "reference": " ".join(reference[k]), "other": " ".join(other.get(k, []))}
        for k in sorted(reference)
        if reference[k] != other.get(k)
    ]


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    """What the check decodes and how."""

    num_threads: int = 1
    """Threads of sherpa-onnx and of PyTorch (the same, so RTFs compare)."""
    batch_size: int = 8
    """Utterances decoded together (sherpa-onnx decode_streams / a PyTorch batch)."""
    beam: int = 4
    """modified_beam_search: max_active_paths of sherpa-onnx, beam of PyTorch."""
    methods: tuple[str, ...] = METHODS
    """Decoding methods to run."""
    fbank: str = "icefall"
    """The model's fbank kind (``W2VBertConfig.fbank``), computed the same way on both sides."""


def run_check(
    model: nn.Module,
    fp32: ExportedFiles,
    int8: ExportedFiles | None,
    utts: Sequence[Utterance],
    *,
    config: CheckConfig = CheckConfig(),
    recogs: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Decodes ``utts`` every way and returns the comparison (see :func:`write_check_report`).

    Args:
        model: the PyTorch Transducer that was exported.
        fp32, int8: the exported files (int8 may be None).
        utts: test utterances (refs from the cuts; if empty, from ``recogs``).
        recogs: stage 6's recogs file per method, e.g. ``{"greedy_search": path}`` (optional).
    """
    id_to_symbol = read_tokens(fp32.tokens)
    stage6 = {m: read_recogs(p) for m, p in (recogs or {}).items()}
    refs = {u.id: list(u.ref) for u in utts}
    if not any(refs.values()):
        for table in stage6.values():
            refs = {k: table[k][0] for k in refs if k in table}
            break
    has_refs = any(refs.values())
    ids = {u.id for u in utts}

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    runs: dict[str, DecodeRun] = {}
    try:
        for method in config.methods:
            key = f"pytorch/{method}"
            runs[key] = pytorch_decode(
                model,
                utts,
                method,
                id_to_symbol,
                beam=config.beam,
                batch_size=config.batch_size,
                name=key,
                fbank=config.fbank,
            )
            for precision, files in (("fp32", fp32), ("int8", int8)):
                if files is None:
                    continue
                key = f"sherpa-onnx-{precision}/{method}"
                runs[key] = sherpa_decode(
                    files,
                    utts,
                    method,
                    num_threads=config.num_threads,
                    max_active_paths=config.beam,
                    batch_size=config.batch_size,
                    name=key,
                    fbank=config.fbank,
                )
                logger.info(f"{key}: RTF {runs[key].rtf:.4f}")
    finally:
        torch.set_num_threads(torch_threads)

    table = []
    for key, run in runs.items():
        method = key.split("/")[1]
        row: dict[str, Any] = {
            "run": key,
            "rtf": run.rtf,
            "wer": word_error_rate(refs, run.hyps) if has_refs else None,
            "identical_to_pytorch": len(ids)
            - len(differences(runs[f"pytorch/{method}"].hyps, run.hyps)),
        }
        if method in stage6:
            row["identical_to_stage6"] = len(ids) - len(
                differences({k: v[1] for k, v in stage6[method].items() if k in ids}, run.hyps)
            )
        table.append(row)
    for method, recog in stage6.items():
        hyps = {k: v[1] for k, v in recog.items() if k in ids}
        table.append(
            {
                "run": f"stage6/{method}",
                "rtf": None,
                "wer": word_error_rate(refs, hyps) if has_refs else None,
                "identical_to_pytorch": len(ids)
                - len(differences(runs[f"pytorch/{method}"].hyps, hyps)),
            }
        )

    result: dict[str, Any] = {
        "num_utterances": len(utts),
        "audio_seconds": sum(u.duration for u in utts),
        "num_threads": config.num_threads,
        "batch_size": config.batch_size,
        "beam": config.beam,
        "files": {"fp32": _file_info(fp32)} | ({"int8": _file_info(int8)} if int8 else {}),
        "runs": table,
    }
    checks: dict[str, Any] = {}
    if "greedy_search" in config.methods:
        reference = runs["pytorch/greedy_search"].hyps
        diffs = differences(reference, runs["sherpa-onnx-fp32/greedy_search"].hyps)
        checks["fp32_greedy_identical_to_pytorch"] = not diffs
        result["fp32_greedy_differences_vs_pytorch"] = diffs
        if "greedy_search" in stage6:
            stage6_hyps = {k: v[1] for k, v in stage6["greedy_search"].items() if k in ids}
            fp32_hyps = runs["sherpa-onnx-fp32/greedy_search"].hyps
            diffs6 = differences(stage6_hyps, fp32_hyps)
            checks["fp32_greedy_identical_to_stage6"] = f"{len(ids) - len(diffs6)}/{len(ids)}"
            result["fp32_greedy_differences_vs_stage6"] = diffs6
            if has_refs:
                delta = word_error_rate(refs, fp32_hyps) - word_error_rate(refs, stage6_hyps)
                checks["fp32_greedy_wer_minus_stage6"] = delta
                checks[f"fp32_greedy_wer_within_{STAGE6_MAX_WER_DIFFERENCE}_of_stage6"] = (
                    abs(delta) <= STAGE6_MAX_WER_DIFFERENCE
                )
        if int8 is not None and has_refs:
            increase = word_error_rate(
                refs, runs["sherpa-onnx-int8/greedy_search"].hyps
            ) - word_error_rate(refs, reference)
            checks["int8_greedy_wer_increase"] = increase
            checks["int8_greedy_wer_within_0.5"] = increase <= INT8_MAX_WER_INCREASE
    result["checks"] = checks
    result["passed"] = all(v for k, v in checks.items() if isinstance(v, bool))
    return result


def _file_info(files: ExportedFiles) -> dict[str, Any]:
    return {
        "encoder": files.encoder.name,
        "decoder": files.decoder.name,
        "joiner": files.joiner.name,
        "bytes": files.sizes(),
    }


def write_check_report(result: dict[str, Any], json_path: Path, md_path: Path, title: str) -> None:
    """Writes ``result`` as JSON and as a short Markdown report."""
    atomic_write_text(json_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    lines = [
        f"# {title}",
        "",
        f"{result['num_utterances']} utterances, {result['audio_seconds']:.1f} s of audio; "
        f"{result['num_threads']} thread(s), batch {result['batch_size']}, beam {result['beam']}.",
        "",
        "| files | encoder | decoder | joiner | total (MB) |",
        "|---|---|---|---|---|",
    ]
    for precision, info in result["files"].items():
        b = info["bytes"]
        lines.append(
            f"| {precision} | {b['encoder']:,} | {b['decoder']:,} | {b['joiner']:,} | {b['total'] / 1e6:.2f} |"
        )
    lines += [
        "",
        "| run | WER % | RTF | identical to PyTorch | identical to stage 6 |",
        "|---|---|---|---|---|",
    ]
    n = result["num_utterances"]
    for row in result["runs"]:
        wer = "-" if row["wer"] is None else f"{row['wer']:.2f}"
        rtf = "-" if row["rtf"] is None else f"{row['rtf']:.4f}"
        same6 = f"{row['identical_to_stage6']}/{n}" if "identical_to_stage6" in row else "-"
        lines.append(
            f"| {row['run']} | {wer} | {rtf} | {row['identical_to_pytorch']}/{n} | {same6} |"
        )
    lines += [
        "",
        "Checks: " + ", ".join(f"{k} = {v}" for k, v in result["checks"].items()),
        f"Passed: {result['passed']}",
    ]
    for key in ("fp32_greedy_differences_vs_pytorch", "fp32_greedy_differences_vs_stage6"):
        diffs = result.get(key) or []
        if diffs:
            lines += ["", f"## {key} ({len(diffs)})", ""]
            lines += [f"- {d['id']}: `{d['reference']}` -> `{d['other']}`" for d in diffs]
    atomic_write_text(md_path, "\n".join(lines) + "\n")
