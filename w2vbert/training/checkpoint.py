"""Everything saved and restored by training: the one place for checkpoint files.

Files in the experiment directory (icefall names):

- ``checkpoint-<batch>.pt``: written every ``--save-every-n`` batches; the newest ``--keep-last-k`` are kept.
- ``epoch-<N>.pt``: written at the end of epoch N.
- ``bad-model-<batch>.pt``: written when training stops after too many non-finite steps.
- ``<name>.rank<r>``: per-rank side file of a checkpoint in DDP (rank r > 0): sampler state and RNG states.

A checkpoint is a dict with the keys ``model`` (state dict), ``model_avg`` (float64 state dict of the
running average, or None), ``optimizer``, ``scheduler``, ``grad_scaler`` (or None), ``sampler``
(rank 0's sampler state), ``rng`` (rank 0's RNG states), ``train_state`` (epoch, batch_idx_train,
batch_idx_in_epoch, epoch_done, bad-step counters), ``batch_idx_train`` and ``params`` (a JSON-friendly
dict with at least ``kind`` ("pretrain"/"finetune") and ``model_config``).

Every file is written atomically: a hidden temp file in the same directory, flush, fsync, ``os.replace``,
then fsync of the directory. A crash at any moment leaves either the old or the new complete file.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from w2vbert.training.ddp import any_true, barrier

if TYPE_CHECKING:
    from w2vbert.training.loop import Trainer

logger = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_TMP_RE = re.compile(r"^\..+\.tmp\d*$")


@dataclass
class TrainState:
    """Training progress saved in every checkpoint (``train_state``)."""

    epoch: int = 1
    batch_idx_train: int = 0  # batches trained in total
    batch_idx_in_epoch: int = 0  # batches of ``epoch`` already trained
    epoch_done: bool = False  # True in epoch-N.pt: resume starts epoch N + 1
    num_bad_steps: int = 0  # skipped optimizer steps in total
    consecutive_bad_steps: int = 0


# Test hook: called with the final path after the temp file is complete and before the rename.
after_temp_write_hook: Callable[[Path], None] | None = None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, error: OSError | RuntimeError) -> OSError:
    """An OSError naming ``path`` for a failed write (a full disk makes ``torch.save`` raise a
    RuntimeError such as "unexpected pos 704 vs 598" that names no file)."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there"
    except OSError:  # pragma: no cover - the directory vanished
        free = "free space unknown"
    errno = getattr(error, "errno", None)
    reason = getattr(error, "strerror", None) or str(error)
    message = f"Writing {path} failed ({free}; the previous file, if any, is kept): {reason}"
    return OSError(errno, message) if errno else OSError(message)


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save(obj, path)`` that never leaves a partial ``path`` (temp file + fsync + rename).

    A failed write (e.g. a full disk) removes the temp file and raises an OSError naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if after_temp_write_hook is not None:
            after_temp_write_hook(path)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temp_files(exp_dir: Path | str) -> list[Path]:
    """Delete temp files left by a killed writer (``.<name>.tmp<pid>``); returns what was removed."""
    removed = []
    for p in Path(exp_dir).glob(".*.tmp*"):
        if _TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def rank_side_path(path: Path | str, rank: int) -> Path:
    """Path of rank ``rank``'s side file (sampler and RNG states) for checkpoint ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}.rank{rank}")


# ----------------------------------------------------------------------------- RNG states


def find_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute of a submodule, by ``<module path>.<attr>``."""
    found: dict[str, torch.Generator] = {}
    for mod_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                found[f"{mod_name}.{attr}" if mod_name else attr] = value
    return found


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The python, numpy, torch (CPU and CUDA) RNG states and those of ``generators``."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(
    state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng_state`; a generator missing from ``state`` raises ``KeyError``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(
                f"Checkpoint has no RNG state for generator {name!r}; it has {list(state['generators'])}."
            )
        gen.set_state(state["generators"][name])


# ----------------------------------------------------------------------------- finding and loading


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this package (trusted file: python/numpy RNG states are pickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    return torch.load(path, map_location=map_location, weights_only=False)


def find_checkpoints(exp_dir: Path | str) -> list[Path]:
    """``checkpoint-<batch>.pt`` files in ``exp_dir``, newest (largest batch) first."""
    found = []
    for p in Path(exp_dir).glob("checkpoint-*.pt"):
        m = _CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def find_epoch_checkpoints(exp_dir: Path | str) -> list[Path]:
    """``epoch-<N>.pt`` files in ``exp_dir``, newest (largest N) first."""
    found = []
    for p in Path(exp_dir).glob("epoch-*.pt"):
        m = _EPOCH_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def _progress_key(path: Path) -> tuple[int, int, int] | None:
    """``(batch_idx_train, epoch_done, mtime_ns)`` read without loading the tensors; None if unreadable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        ts = ckpt["train_state"]
        return int(ts["batch_idx_train"]), int(bool(ts["epoch_done"])), path.stat().st_mtime_ns
    except Exception as e:  # noqa: BLE001 - any failure means "not a usable checkpoint"
        logger.warning(f"Checkpoint {path} is unreadable ({type(e).__name__}: {e}); skipping it.")
        return None


def resume_candidates(exp_dir: Path | str) -> list[Path]:
    """All ``checkpoint-*.pt`` and ``epoch-*.pt`` files ordered newest first by training progress.

    Unreadable files (e.g. truncated) are skipped with a warning naming them.
    """
    keyed = []
    for p in find_checkpoints(exp_dir) + find_epoch_checkpoints(exp_dir):
        key = _progress_key(p)
        if key is not None:
            keyed.append((key, p))
    return [p for _, p in sorted(keyed, key=lambda kp: kp[0], reverse=True)]


def load_for_rank(path: Path, rank: int) -> dict[str, Any]:
    """Load checkpoint ``path``; for rank > 0 replace ``sampler``/``rng`` by the rank's side file."""
    ckpt = load_checkpoint(path)
    if rank > 0:
        side = rank_side_path(path, rank)
        ckpt.update(load_checkpoint(side))
    return ckpt


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


# ----------------------------------------------------------------------------- the trainer's state
# Functions of the Trainer (w2vbert.training.loop) that write and restore everything it holds.


def _checkpoint_dict(trainer: Trainer, rank_part: bool) -> dict[str, Any]:
    consumed = 0 if trainer.state.epoch_done else trainer.state.batch_idx_in_epoch
    part: dict[str, Any] = {
        "sampler": trainer.sampler_state_fn(trainer.sampler, consumed),
        "rng": capture_rng_state(trainer.generators),
    }
    if rank_part:
        return part
    return {
        **part,
        "model": trainer.model.state_dict(),
        "model_avg": trainer.model_avg,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "grad_scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "train_state": asdict(trainer.state),
        "batch_idx_train": trainer.state.batch_idx_train,
        "params": {**trainer.params, "world_size": trainer.dist.world_size},
    }


def save_training_checkpoint(
    trainer: Trainer, path: Path, extra: dict[str, Any] | None = None
) -> None:
    """Write a checkpoint: ranks > 0 their side files first, then rank 0 the main file."""
    if not trainer.dist.is_main:
        atomic_torch_save(
            _checkpoint_dict(trainer, rank_part=True), rank_side_path(path, trainer.dist.rank)
        )
    barrier(trainer.dist)
    if trainer.dist.is_main:
        atomic_torch_save({**_checkpoint_dict(trainer, rank_part=False), **(extra or {})}, path)
        logger.info(f"Saved {path}")
    barrier(trainer.dist)


def _restore(trainer: Trainer, ckpt: dict[str, Any], path: Path) -> None:
    saved_ws = ckpt["params"].get("world_size", 1)
    if saved_ws != trainer.dist.world_size:
        raise ValueError(
            f"Checkpoint {path} was written with --world-size {saved_ws}, but this run has "
            f"{trainer.dist.world_size}; the sampler positions cannot be restored."
        )
    trainer.model.load_state_dict(ckpt["model"])
    if trainer.model_avg is not None and ckpt.get("model_avg") is not None:
        trainer.model_avg = ckpt["model_avg"]
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if trainer.scaler is not None and ckpt.get("grad_scaler") is not None:
        trainer.scaler.load_state_dict(ckpt["grad_scaler"])
    trainer.state = TrainState(**ckpt["train_state"])
    if trainer.state.epoch_done:
        trainer.state = TrainState(
            epoch=trainer.state.epoch + 1,
            batch_idx_train=trainer.state.batch_idx_train,
            num_bad_steps=trainer.state.num_bad_steps,
            consecutive_bad_steps=trainer.state.consecutive_bad_steps,
        )
    else:
        trainer.sampler.load_state_dict(dict(ckpt["sampler"]))
        trainer.resumed_mid_epoch = True
    trainer.pending_rng = ckpt["rng"]
    trainer.sinks.truncate_after(trainer.state.batch_idx_train)
    logger.info(
        f"Resumed from {path}: epoch {trainer.state.epoch}, batch {trainer.state.batch_idx_in_epoch} of the epoch, "
        f"batch_idx_train {trainer.state.batch_idx_train}"
    )


def resume_training(trainer: Trainer) -> Path | None:
    """Restore from --start-batch/--start-epoch, or the newest complete checkpoint; returns its path."""
    c = trainer.config
    if trainer.dist.is_main:
        for p in remove_stale_temp_files(trainer.exp_dir):
            logger.warning(f"Removed {p}, a partial checkpoint left by a killed run")
    barrier(trainer.dist)
    if c.start_batch > 0:
        explicit: list[Path] | None = [trainer.exp_dir / f"checkpoint-{c.start_batch}.pt"]
    elif c.start_epoch > 1:
        explicit = [trainer.exp_dir / f"epoch-{c.start_epoch - 1}.pt"]
    else:
        explicit = None
    if explicit is None and not c.resume:
        return None
    candidates = explicit if explicit is not None else resume_candidates(trainer.exp_dir)
    for path in candidates:
        try:
            ckpt = load_for_rank(path, trainer.dist.rank)
            ok = True
        except Exception as e:  # noqa: BLE001
            if explicit is not None:
                raise
            logger.warning(
                f"Cannot load checkpoint {path} ({type(e).__name__}: {e}); trying an older one."
            )
            ok = False
        if any_true(not ok, trainer.dist, trainer.device):
            continue
        _restore(trainer, ckpt, path)
        return path
    return None
