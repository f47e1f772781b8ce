"""Reads what the stages left in an exp dir: stage times, decode results, training metrics."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from w2vbert.decoding.scoring import char_error_rate, read_recogs

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DecodeResult:
    """One `results-<set>-<suffix>.json` written by `w2vbert.decode`."""

    set_name: str
    method: str
    suffix: str
    wer: float
    """Word error rate in percent."""
    cer: float | None
    """Character error rate in percent (from the recogs file for results written without it)."""
    rtf: float
    """Decoding time / audio duration."""
    chunk_size: int = -1
    """Attention chunk in encoder steps (-1: full context)."""
    left_context_chunks: int = -1
    step_ms: int = 40
    """One encoder step in ms."""


@dataclass(frozen=True, kw_only=True)
class PretrainSummary:
    """The last validation (else training) row of a pre-training `metrics.jsonl`."""

    steps: int
    final: dict[str, float]
    train_curve: list[dict[str, float]] = field(repr=False)


def stage_times(log_dir: Path) -> dict[str, int]:
    """`{"4 pretrain": seconds}` from `stage-times.txt`; the newest entry of a stage wins."""
    times: dict[str, int] = {}
    path = log_dir / "stage-times.txt"
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                times[f"{parts[0]} {parts[1]}"] = int(parts[2])
    return dict(sorted(times.items(), key=lambda kv: int(kv[0].split()[0])))


def decode_results(finetune_dir: Path) -> list[DecodeResult]:
    """Every decode result under `<finetune_dir>/<method>/results-*.json`, newest last."""
    results = []
    files = sorted(finetune_dir.glob("*/results-*.json"), key=lambda p: p.stat().st_mtime)
    for path in files:
        d = json.loads(path.read_text())
        cer = d.get("cer")
        recogs = path.parent / f"recogs-{d['set']}-{d['suffix']}.txt"
        if cer is None and recogs.is_file():
            cer = char_error_rate([(k, r, h) for k, (r, h) in read_recogs(recogs).items()])
        results.append(
            DecodeResult(
                set_name=d["set"],
                method=d["method"],
                suffix=d["suffix"],
                wer=float(d["wer"]),
                cer=None if cer is None else float(cer),
                rtf=float(d["rtf"]),
                chunk_size=int(d.get("chunk_size", -1)),
                left_context_chunks=int(d.get("left_context_chunks", -1)),
                step_ms=int(d.get("step_ms", 40)),
            )
        )
    return results


def latest_by_set(
    results: list[DecodeResult], method: str, chunk_size: int = -1
) -> dict[str, DecodeResult]:
    """`{set: result}` of one method at one chunk size (default: full context), keeping the
    newest result of each set."""
    return {
        r.set_name: r for r in results if r.method == method and r.chunk_size == chunk_size
    }


def streaming_checks(finetune_dir: Path) -> dict[int, dict]:
    """`{chunk_size: result}` of stage 7's streaming checks (`export-check-*-streaming.json`),
    the newest of each chunk size."""
    checks: dict[int, dict] = {}
    files = sorted(finetune_dir.glob("export-check-*-streaming.json"), key=lambda p: p.stat().st_mtime)
    for path in files:
        d = json.loads(path.read_text())
        checks[int(d["chunk_size"])] = d
    return checks


def read_metrics(exp_dir: Path) -> list[dict]:
    """Rows of `<exp_dir>/metrics.jsonl` (training and validation), in order."""
    path = exp_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: ignore it
                logger.warning("%s: skipping an unreadable line", path)
    return rows


def pretrain_summary(exp_dir: Path) -> PretrainSummary | None:
    """Final metrics of a pre-training run, or None when it has none."""
    rows = read_metrics(exp_dir)
    if not rows:
        return None
    train = [r for r in rows if r.get("split") == "train"]
    valid = [r for r in rows if r.get("split") == "valid"]
    final = (valid or train)[-1]
    return PretrainSummary(steps=int(rows[-1]["step"]), final=final, train_curve=train)


def export_check(finetune_dir: Path) -> Path | None:
    """The newest `export-check-*.md` report of stage 7, or None."""
    files = sorted(finetune_dir.glob("export-check-*.md"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None
