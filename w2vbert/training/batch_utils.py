"""Small helpers on training batches (dicts from the datasets): cut ids, audio seconds, device moves."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from w2vbert.util.atomic import atomic_write_text

logger = logging.getLogger(__name__)


def batch_cut_ids(batch: Any) -> list[str]:
    if isinstance(batch, dict) and "cut_ids" in batch:
        return list(batch["cut_ids"])
    return []


def batch_audio_seconds(batch: Any) -> float:
    """Audio duration of a batch: ``durations`` (s) if present, else ``feature_lens`` x 10 ms."""
    if isinstance(batch, dict):
        if "durations" in batch:
            return float(torch.as_tensor(batch["durations"]).sum())
        if "feature_lens" in batch:
            return float(batch["feature_lens"].sum()) * 0.01
    return 0.0


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    return batch


def save_failed_batch(exp_dir: Path, batch: Any, step: int, rank: int, reason: str) -> Path:
    """icefall's display_and_save_batch: write the batch's cut ids and tensor shapes as JSON."""
    info = {
        "reason": reason,
        "step": step,
        "rank": rank,
        "cut_ids": batch_cut_ids(batch),
        "shapes": (
            {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            if isinstance(batch, dict)
            else {}
        ),
    }
    path = Path(exp_dir) / f"failed-batch-{step}-rank{rank}.json"
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")
    logger.error(f"Saved the failing batch's cut ids to {path}: {info['cut_ids'][:20]}")
    return path


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
