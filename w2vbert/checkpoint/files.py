"""Checkpoint files: writing, loading, finding and pruning them. No training code here: what a
training checkpoint holds is assembled and restored by the Trainer (:mod:`w2vbert.training.loop`).

Files in the experiment directory (icefall names):

- ``checkpoint-<batch>.pt``: written every ``--save-every-n`` batches; the newest ``--keep-last-k`` are kept.
- ``epoch-<N>.pt``: written at the end of epoch N.
- ``bad-model-<batch>.pt``: written when training stops after too many non-finite steps.
- ``<name>.rank<r>``: per-rank side file of a checkpoint in DDP (rank r > 0): sampler state and RNG states.
- ``averaged-<suffix>.pt``: an averaged model from ``python -m w2vbert.average`` (``model`` and ``params`` only).

A training checkpoint is a dict with the keys ``model`` (state dict), ``model_avg`` (float64 state dict
of the running average, or None), ``optimizer``, ``scheduler``, ``grad_scaler`` (or None), ``sampler``
(rank 0's sampler state), ``rng`` (rank 0's RNG states), ``train_state`` (epoch, batch_idx_train,
batch_idx_in_epoch, epoch_done, bad-step counters), ``batch_idx_train`` and ``params`` (a JSON-friendly
dict with at least ``kind`` ("pretrain"/"finetune") and ``model_config``).

Every file is written by the one atomic writer (:mod:`w2vbert.util.atomic`): a crash at any moment
leaves either the old or the new complete file.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import torch

from w2vbert.util.atomic import remove_stale_partials_in

logger = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")


_LEGACY_TMP_RE = re.compile(r"^\..+\.pt(\.rank\d+)?\.tmp\d*$")  # before the one atomic writer


def remove_stale_temp_files(exp_dir: Path | str) -> list[Path]:
    """Delete temp files of killed writers in ``exp_dir`` (a live writer's are kept); returns them.

    Call it only before this process writes there (it takes this process's own as stale too).
    """
    removed = remove_stale_partials_in(exp_dir, include_own=True)
    for p in Path(exp_dir).glob(".*.tmp*"):
        if _LEGACY_TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def rank_side_path(path: Path | str, rank: int) -> Path:
    """Path of rank ``rank``'s side file (sampler and RNG states) for checkpoint ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}.rank{rank}")


# ----------------------------------------------------------------------------- finding and loading


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this package (trusted file: python/numpy RNG states are pickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    return torch.load(path, map_location=map_location, weights_only=False)


def _numbered(exp_dir: Path | str, glob: str, pattern: re.Pattern) -> list[Path]:
    """Files of ``exp_dir`` matching ``glob`` and ``pattern`` (group 1: a number), largest first."""
    found = []
    for p in Path(exp_dir).glob(glob):
        m = pattern.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def find_checkpoints(exp_dir: Path | str) -> list[Path]:
    """``checkpoint-<batch>.pt`` files in ``exp_dir``, newest (largest batch) first."""
    return _numbered(exp_dir, "checkpoint-*.pt", _CHECKPOINT_RE)


def find_epoch_checkpoints(exp_dir: Path | str) -> list[Path]:
    """``epoch-<N>.pt`` files in ``exp_dir``, newest (largest N) first."""
    return _numbered(exp_dir, "epoch-*.pt", _EPOCH_RE)


def _progress_key(
    path: Path, problems: dict[Path, str] | None = None
) -> tuple[int, int, int] | None:
    """``(batch_idx_train, epoch_done, mtime_ns)`` read without loading the tensors; None if
    unreadable (the reason then goes to ``problems[path]``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        ts = ckpt["train_state"]
        return int(ts["batch_idx_train"]), int(bool(ts["epoch_done"])), path.stat().st_mtime_ns
    except Exception as e:  # noqa: BLE001 - any failure means "not a usable checkpoint"
        logger.warning(f"Checkpoint {path} is unreadable ({type(e).__name__}: {e}); skipping it.")
        if problems is not None:
            problems[path] = f"{type(e).__name__}: {e}"
        return None


def resume_candidates(
    exp_dir: Path | str, problems: dict[Path, str] | None = None
) -> list[Path]:
    """All ``checkpoint-*.pt`` and ``epoch-*.pt`` files ordered newest first by training progress.

    Unreadable files (e.g. truncated) are skipped with a warning naming them (and the reason in
    ``problems[path]`` when given).
    """
    keyed = []
    for p in find_checkpoints(exp_dir) + find_epoch_checkpoints(exp_dir):
        key = _progress_key(p, problems)
        if key is not None:
            keyed.append((key, p))
    return [p for _, p in sorted(keyed, key=lambda kp: kp[0], reverse=True)]


def set_aside_later(exp_dir: Path | str, than: Path) -> list[Path]:
    """Move every checkpoint of more training progress than ``than`` (and its rank side files)
    into ``<exp_dir>/superseded-<time>/``; returns the moved files (their old paths).

    For an explicit start from an earlier checkpoint (``--start-epoch``/``--start-batch``, e.g.
    with another GPU count): the later files belong to the abandoned continuation, and left in
    place they would stay "newest", so the next automatic resume would pick them (or refuse
    them) and pruning would delete the new run's files first. Nothing is deleted.
    """
    exp_dir = Path(exp_dir)
    limit = _progress_key(than)
    if limit is None:
        return []
    later = [p for p in resume_candidates(exp_dir) if (_progress_key(p) or limit)[:2] > limit[:2]]
    if not later:
        return []
    target = exp_dir / time.strftime("superseded-%Y%m%d-%H%M%S")
    target.mkdir(exist_ok=True)
    for p in later:
        for f in [p, *p.parent.glob(p.name + ".rank*")]:
            f.rename(target / f.name)
    logger.warning(
        f"Starting from {than.name}: moved {len(later)} later checkpoint(s) of the abandoned "
        f"continuation to {target} ({', '.join(p.name for p in later[:5])}"
        f"{', ...' if len(later) > 5 else ''})"
    )
    return later


# What a training run writes in its exp dir besides checkpoints (w2vbert.training): records of
# that run, which move with its checkpoints.
RUN_RECORDS = ("metrics.jsonl", "tensorboard", "config.json", "log")


def set_aside_all(exp_dir: Path | str, why: str, reason: str) -> Path:
    """Move every checkpoint of ``exp_dir`` (with its rank side files, ``bad-model-*.pt``) and the
    run's records (:data:`RUN_RECORDS`) into ``<exp_dir>/<why>-<time>/``; returns that directory.
    Nothing is deleted; ``reason`` is logged and written there as ``README``."""
    exp_dir = Path(exp_dir)
    target = exp_dir / time.strftime(f"{why}-%Y%m%d-%H%M%S")
    target.mkdir()
    moved = []
    files = find_checkpoints(exp_dir) + find_epoch_checkpoints(exp_dir)
    files += sorted(exp_dir.glob("bad-model-*.pt"))
    for p in [*files, *(exp_dir / name for name in RUN_RECORDS)]:
        for f in [p, *p.parent.glob(p.name + ".rank*")]:
            if f.exists():
                f.rename(target / f.name)
                moved.append(f.name)
    (target / "README").write_text(reason + "\n")
    logger.warning(
        f"{reason} Moved {len(moved)} file(s) of that run to {target} ({', '.join(moved[:6])}"
        f"{', ...' if len(moved) > 6 else ''}); training from scratch."
    )
    return target


def _remove_all_but_newest(newest_first: list[Path], keep: int) -> None:
    """Delete ``newest_first[keep:]`` and their rank side files; ``keep`` <= 0 keeps all."""
    if keep <= 0:
        return
    for p in newest_first[keep:]:
        for side in p.parent.glob(p.name + ".rank*"):
            side.unlink(missing_ok=True)
        p.unlink(missing_ok=True)
        logger.info(f"Removed old {p}")


def remove_old_checkpoints(exp_dir: Path | str, keep_last_k: int) -> None:
    """Keep the newest ``keep_last_k`` ``checkpoint-*.pt`` (and their rank side files); 0 keeps all."""
    _remove_all_but_newest(find_checkpoints(exp_dir), keep_last_k)


def remove_old_epochs(exp_dir: Path | str, keep_last: int) -> None:
    """Keep the newest ``keep_last`` ``epoch-<N>.pt`` (and their rank side files); 0 keeps all.

    Decoding ``--epoch E --avg A`` reads epoch-(E-A+1..E).pt, or epoch-(E-A).pt and epoch-E.pt
    with ``--use-averaged-model``: keep at least A + 1.
    """
    _remove_all_but_newest(find_epoch_checkpoints(exp_dir), keep_last)
