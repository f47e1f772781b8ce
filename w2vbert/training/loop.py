"""The one training loop, shared by pre-training and fine-tuning.

The task supplies ``compute_loss(model, batch, step) -> (loss, metrics, num_frames)``: ``loss`` is a scalar
tensor that is back-propagated as it is (divided by ``accum_grad``), ``metrics`` are per-batch floats
(logged as frame-weighted means; include the loss parts there) and ``num_frames`` weighs them.
``step`` is ``num_updates`` (updates, i.e. optimizer steps, finished before this batch; equal to
``batch_idx_train`` with ``accum_grad = 1``); tasks derive step-dependent things from it (Gumbel
temperature, loss-scale warm-up), so they follow the updates whatever the GPU count and the
accumulation, and resume exactly.

Per batch: forward+backward (under DDP's ``no_sync()`` unless it ends an update, so gradients are
all-reduced once per update); at every ``accum_grad``-th batch of the epoch an update (skipped, and
counted, when the loss or gradient is not finite; an epoch's last, partial window is an update too);
then the averaged model, logging, validation and checkpointing, in that order. Resume restores model, averaged model, optimizer, scheduler, grad scaler, sampler position,
RNG states and counters, so a resumed run continues exactly as the uninterrupted one (CPU, num_workers=0).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from w2vbert import checkpoint as checkpoints
from w2vbert.data.datasets import BatchLoadError
from w2vbert.training.batch_utils import (
    batch_audio_seconds,
    batch_cut_ids,
    format_duration,
    move_to_device,
    save_failed_batch,
)
from w2vbert.training.config import TrainingConfig
from w2vbert.training.ddp import DistInfo, any_true, barrier
from w2vbert.training.metrics import MetricSinks, MetricsTracker
from w2vbert.training.signals import STOP_SIGNALS, TrainingInterrupted
from w2vbert.util.dataclass_args import config_to_dict
from w2vbert.util.lock import DirectoryInUseError, DirectoryLock
from w2vbert.util.provenance import flatten_dict

logger = logging.getLogger(__name__)

ComputeLoss = Callable[[nn.Module, dict, int], tuple[torch.Tensor, dict[str, float], float]]


@dataclass
class TrainState:
    """Training progress saved in every checkpoint (``train_state``)."""

    epoch: int = 1
    batch_idx_train: int = 0  # batches trained in total
    batch_idx_in_epoch: int = 0  # batches of ``epoch`` already trained
    epoch_done: bool = False  # True in epoch-N.pt: resume starts epoch N + 1
    num_bad_steps: int = 0  # skipped optimizer steps in total
    consecutive_bad_steps: int = 0
    num_updates: int = 0  # updates (accumulation windows, skipped ones included) in total

    def next_epoch(self) -> "TrainState":
        """The state at the start of the epoch after this one (counters carried over)."""
        return TrainState(
            epoch=self.epoch + 1,
            batch_idx_train=self.batch_idx_train,
            num_bad_steps=self.num_bad_steps,
            consecutive_bad_steps=self.consecutive_bad_steps,
            num_updates=self.num_updates,
        )


class StaleInputsError(ValueError):
    """The checkpoint to resume from was trained on other inputs (by content); ``changes``: one
    line per input."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


class TrainingDivergedError(RuntimeError):
    """Raised after ``max_bad_steps`` consecutive steps with a non-finite loss or gradient."""


# Settings a resumed run may change: they do not alter what has been trained or what will be
# (how long, how often it logs/validates/saves, where it runs). Every other TrainingConfig and
# DataConfig field must equal the checkpoint's, or the resume is refused by name.
RESUMABLE_TRAINING_CHANGES = frozenset(
    {
        "exp_dir", "num_epochs", "start_epoch", "start_batch", "resume", "max_steps",
        "save_every_n", "keep_last_k", "keep_last_epochs", "log_interval", "valid_interval",
        "tensorboard", "device", "master_port", "max_bad_steps", "world_size",
        "activation_checkpointing", "compile", "dist_timeout_minutes", "stale_inputs",
    }
)  # fmt: skip
# ... and these only at an epoch boundary (from epoch-N.pt): a new GPU count re-shards the data
# (each rank's sampler position is its own) and changes the accumulation that a
# --global-batch-duration derives.
EPOCH_BOUNDARY_TRAINING_CHANGES = frozenset({"world_size", "accum_grad"})
RESUMABLE_DATA_CHANGES = frozenset({"valid_cuts", "valid_max_duration", "num_workers", "scan_cuts"})


class Trainer:
    """Runs epochs of ``compute_loss`` over ``train_dl`` (whose ``sampler`` has set_epoch/state_dict).

    ``model`` is the bare module already on ``device``; the trainer wraps it in DDP when distributed.
    ``params`` is stored in every checkpoint (must hold ``kind`` and ``model_config``).
    ``sampler_state_fn(sampler, consumed)`` returns the sampler state to save after ``consumed`` batches.
    ``data_settings`` (the data-loading config as a dict) is saved too, so that a resume with other
    batching is refused. ``rank_local_data``: each rank's loader yields its own data, in numbers
    that may differ (Shar shards split by rank): every batch, the ranks agree whether all have one,
    and the epoch ends for all when the first runs out. The trainer holds ``<exp_dir>/.lock`` (one writer per exp dir) from its
    creation to the end of :meth:`train`.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        compute_loss: ComputeLoss,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_dl: torch.utils.data.DataLoader,
        valid_dl: torch.utils.data.DataLoader | None,
        config: TrainingConfig,
        params: dict[str, Any],
        dist_info: DistInfo = DistInfo(),
        device: torch.device | str = "cpu",
        sampler_state_fn: Callable[[Any, int], dict] | None = None,
        find_unused_parameters: bool = False,
        epoch_audio_seconds: float | None = None,
        data_settings: dict[str, Any] | None = None,
        rank_local_data: bool = False,
    ) -> None:
        for key in ("kind", "model_config"):
            if key not in params:
                raise ValueError(f"`params` must contain {key!r}, but has only {sorted(params)}.")
        self.model, self.compute_loss, self.config = model, compute_loss, config
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_dl, self.valid_dl, self.params = train_dl, valid_dl, params
        self.dist, self.device = dist_info, torch.device(device)
        self.sampler = train_dl.sampler
        self.sampler_state_fn = sampler_state_fn or (lambda s, n: s.state_dict())
        self.epoch_audio_seconds = epoch_audio_seconds
        self.exp_dir = Path(config.exp_dir)
        self.data_settings = data_settings
        self.rank_local_data = rank_local_data and dist_info.distributed
        self._lock = self._take_lock()
        self.state = TrainState(epoch=1)
        self.generators = checkpoints.find_generators(model)
        if dist_info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model: nn.Module = DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=find_unused_parameters
            )
        else:
            self.ddp_model = model
        self.model_avg = checkpoints.init_averaged_model(model) if dist_info.is_main else None
        self.amp_dtype = self._amp_dtype()
        use_scaler = config.use_fp16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.sinks = MetricSinks(self.exp_dir, config.tensorboard, enabled=dist_info.is_main)
        self.pending_rng: dict | None = None
        self.resumed_mid_epoch = False
        self._window_bad = False
        self._window_batches = 0
        self._norm_snapshot: dict[str, torch.Tensor] | None = None
        self._stop_signum: int | None = None
        self._log_updates = 0  # num_updates at the last log line

    # ------------------------------------------------------------------ set-up
    def _take_lock(self) -> DirectoryLock | None:
        """Rank 0 locks the exp dir; every rank stops if it could not."""
        lock, error = None, None
        if self.dist.is_main:
            lock = DirectoryLock(self.exp_dir, "training")
            try:
                lock.acquire()
                weakref.finalize(self, lock.release)
            except DirectoryInUseError as e:
                error = e
        if any_true(error is not None, self.dist, self.device):
            raise error or DirectoryInUseError(f"Rank 0 could not lock {self.exp_dir}.")
        return lock

    def _amp_dtype(self) -> torch.dtype | None:
        c = self.config
        if c.use_fp16:
            if self.device.type != "cuda":
                raise ValueError(
                    "--use-fp16 needs a CUDA device; on CPU use fp32 (default) or --use-bf16 --bf16-on-cpu."
                )
            return torch.float16
        if c.use_bf16:
            if self.device.type != "cuda" and not c.bf16_on_cpu:
                raise ValueError(
                    "--use-bf16 on CPU also needs --bf16-on-cpu (CPU bf16 autocast is slow on some CPUs)."
                )
            return torch.bfloat16
        return None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, rank_part: bool = False) -> dict[str, Any]:
        """What a checkpoint of this trainer holds (see :mod:`w2vbert.checkpoint.files`);
        ``rank_part``: only this rank's sampler and RNG states (a rank > 0 side file)."""
        consumed = 0 if self.state.epoch_done else self.state.batch_idx_in_epoch
        part: dict[str, Any] = {
            "sampler": self.sampler_state_fn(self.sampler, consumed),
            "rng": checkpoints.capture_rng_state(self.generators),
        }
        if rank_part:
            return part
        return {
            **part,
            "model": self.model.state_dict(),
            "model_avg": self.model_avg,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "train_state": asdict(self.state),
            "batch_idx_train": self.state.batch_idx_train,
            "params": {**self.params, "world_size": self.dist.world_size},
            "training_config": config_to_dict(self.config),
            "data_config": self.data_settings,
        }

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Write a checkpoint of the whole training state: ranks > 0 their side files first,
        then rank 0 the main file (with ``extra`` entries)."""
        if not self.dist.is_main:
            side = checkpoints.rank_side_path(path, self.dist.rank)
            checkpoints.atomic_torch_save(self.checkpoint_dict(rank_part=True), side)
        barrier(self.dist)
        if self.dist.is_main:
            checkpoints.atomic_torch_save({**self.checkpoint_dict(), **(extra or {})}, path)
            logger.info(f"Saved {path}")
        barrier(self.dist)

    def restore(self, ckpt: dict[str, Any], path: Path) -> None:
        """Restore everything :meth:`checkpoint_dict` saved (``path`` names it in logs); ``ckpt``
        has passed :meth:`check_resumable` (as :meth:`maybe_resume` does first)."""
        self.model.load_state_dict(ckpt["model"])
        if self.model_avg is not None and ckpt.get("model_avg") is not None:
            self.model_avg = ckpt["model_avg"]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("grad_scaler") is not None:
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        saved_state = dict(ckpt["train_state"])
        if "num_updates" not in saved_state:  # written before updates were counted
            accum = (ckpt.get("training_config") or {}).get("accum_grad", 1)
            saved_state["num_updates"] = saved_state["batch_idx_train"] // accum
        self.state = TrainState(**saved_state)
        if self.state.epoch_done:
            self.state = self.state.next_epoch()
        else:
            self.sampler.load_state_dict(dict(ckpt["sampler"]))
            self.resumed_mid_epoch = True
        self.pending_rng = ckpt["rng"]
        self._log_updates = self.state.num_updates
        if ckpt["params"].get("world_size", 1) != self.dist.world_size:
            # another GPU count at an epoch boundary: rank 0 continues its RNG streams, the
            # other ranks (whose side files, if any, belong to other ranks) draw fresh ones
            if self.dist.rank > 0:
                self.pending_rng = None
                # fresh, reproducible streams from (seed, rank, epoch)
                value = (self.config.seed * 1_000_003 + self.dist.rank * 7919 + self.state.epoch) % 2**31
                checkpoints.seed_everything(value, self.generators)
            logger.info(
                f"Resuming at epoch {self.state.epoch} on {self.dist.world_size} ranks (the "
                f"checkpoint's run had {ckpt['params'].get('world_size', 1)}): the data is "
                f"re-sharded and --accum-grad is {self.config.accum_grad}"
            )
        self.sinks.truncate_after(self.state.batch_idx_train)
        logger.info(
            f"Resumed from {path}: epoch {self.state.epoch}, batch {self.state.batch_idx_in_epoch} "
            f"of the epoch, batch_idx_train {self.state.batch_idx_train}"
        )

    def check_resumable(self, ckpt: dict[str, Any], path: Path) -> None:
        """Refuse (ValueError naming every difference) to resume a run with other settings: it
        would not continue exactly, and the run's records would claim what did not happen."""
        saved_ws = ckpt["params"].get("world_size", 1)
        at_epoch_boundary = bool(ckpt["train_state"].get("epoch_done"))
        if saved_ws != self.dist.world_size and not at_epoch_boundary:
            epoch = ckpt["train_state"]["epoch"]
            earlier = (
                f"--start-epoch {epoch} (from epoch-{epoch - 1}.pt, the last epoch boundary)"
                if epoch > 1
                else "--resume false (from scratch: no epoch has finished)"
            )
            raise ValueError(
                f"Checkpoint {path} was written with --world-size {saved_ws}, but this run has "
                f"{self.dist.world_size}: it is in the middle of epoch {epoch}, where each rank's "
                f"sampler position cannot be re-sharded. Re-run with --world-size {saved_ws}, "
                f"start again with {self.dist.world_size} ranks from {earlier}, or train in "
                "another --exp-dir."
            )
        stale = checkpoints.changed_inputs(
            ckpt["params"].get("inputs"), self.params.get("inputs", {})
        )
        if stale:
            raise StaleInputsError(
                f"Cannot resume from {path}: it was trained on other inputs: " + "; ".join(stale)
                + f". Its model is not a model of this run's inputs: train in another --exp-dir, or "
                f"re-run with --stale-inputs set-aside to move its checkpoints to "
                f"{self.exp_dir}/stale-<time>/ and train from scratch (nothing in {self.exp_dir} "
                "was changed).",
                stale,
            )
        not_settings = ("world_size", "inputs")  # compared above
        saved_params = flatten_dict(
            {k: v for k, v in ckpt["params"].items() if k not in not_settings}
        )
        params = flatten_dict({k: v for k, v in self.params.items() if k != "inputs"})
        changed = [
            _difference(key, saved_params.get(key), params.get(key))
            for key in sorted(set(saved_params) | set(params))
            if saved_params.get(key) != params.get(key)
        ]
        training_may_change = RESUMABLE_TRAINING_CHANGES
        if at_epoch_boundary and saved_ws != self.dist.world_size:
            training_may_change = training_may_change | EPOCH_BOUNDARY_TRAINING_CHANGES
        sections = (
            ("training_config", config_to_dict(self.config), training_may_change, _TRAINING_DEFAULTS),
            ("data_config", self.data_settings, RESUMABLE_DATA_CHANGES, {}),
        )
        for name, now, may_change, defaults in sections:
            saved = ckpt.get(name)
            if saved is None or now is None:
                continue  # written before settings were recorded, or not given to this trainer
            # a setting added after the checkpoint was written counts as its default there
            saved = {**{k: v for k, v in defaults.items() if k in now}, **saved}
            for key in sorted(set(saved) | set(now)):
                if key not in may_change and saved.get(key) != now.get(key):
                    changed.append(_difference(key, saved.get(key), now.get(key)))
        if changed:
            raise ValueError(
                f"Cannot resume from {path}: it was trained with other settings: "
                + "; ".join(changed)
                + f". Re-run with the checkpoint's settings to continue it, or train in another "
                f"--exp-dir (nothing in {self.exp_dir} was changed)."
            )

    def maybe_resume(self) -> Path | None:
        """Restore from --start-batch/--start-epoch or the newest complete checkpoint; its path or None."""
        c = self.config
        if self.dist.is_main:
            for p in checkpoints.remove_stale_temp_files(self.exp_dir):
                logger.warning(f"Removed {p}, a partial checkpoint left by a killed run")
        barrier(self.dist)
        if c.start_batch > 0:
            explicit: list[Path] | None = [self.exp_dir / f"checkpoint-{c.start_batch}.pt"]
        elif c.start_epoch > 1:
            explicit = [self.exp_dir / f"epoch-{c.start_epoch - 1}.pt"]
        else:
            explicit = None
        if explicit is None and not c.resume:
            return None
        problems: dict[Path, str] = {}  # checkpoint files that cannot be used, and why
        candidates = (
            explicit
            if explicit is not None
            else checkpoints.resume_candidates(self.exp_dir, problems)
        )
        for path in candidates:
            try:
                ckpt = checkpoints.load_checkpoint(path)
                ok = True
            except Exception as e:  # noqa: BLE001
                if explicit is not None:
                    raise
                logger.warning(
                    f"Cannot load checkpoint {path} ({type(e).__name__}: {e}); trying an older one."
                )
                problems[path] = f"{type(e).__name__}: {e}"
                ok = False
            if any_true(not ok, self.dist, self.device):
                continue
            # the newest complete checkpoint decides: another world size or other settings are
            # refused here, never skipped (skipping every file would silently start over)
            try:
                self.check_resumable(ckpt, path)
            except StaleInputsError as e:
                if c.stale_inputs != "set-aside":
                    raise
                barrier(self.dist)  # every rank has read its checkpoint before it moves
                if self.dist.is_main:
                    why = f"{path} was trained on other inputs: " + "; ".join(e.changes) + "."
                    checkpoints.set_aside_all(self.exp_dir, "stale", why)
                barrier(self.dist)
                return None
            if self.dist.rank > 0 and ckpt["params"].get("world_size", 1) == self.dist.world_size:
                ckpt.update(
                    checkpoints.load_checkpoint(checkpoints.rank_side_path(path, self.dist.rank))
                )
            self.restore(ckpt, path)
            if explicit is not None:  # a start from an earlier point abandons what came after it
                if self.dist.is_main:
                    checkpoints.set_aside_later(self.exp_dir, path)
                barrier(self.dist)
            self._warn_if_trained_further(path)
            return path
        if problems:  # checkpoints exist, but none can be used: never a silent fresh start
            listed = "; ".join(f"{p.name} ({why})" for p, why in problems.items())
            raise ValueError(
                f"{self.exp_dir} has {len(problems)} checkpoint(s), but none can be resumed "
                f"from: {listed}. Nothing was changed. To train from scratch, use a new --exp-dir, "
                "or move them away (or re-run with --no-resume, which writes over them)."
            )
        return None

    def finished(self) -> bool:
        """Whether the run has nothing left to train (its last epoch, or --max-steps, is done)."""
        s, c = self.state, self.config
        return s.epoch > c.num_epochs or (c.max_steps > 0 and s.num_updates >= c.max_steps)

    def _warn_if_trained_further(self, path: Path) -> None:
        """A resume of a run that has trained more epochs than --num-epochs asks for trains
        nothing, and keeps its model: say so."""
        s, asked = self.state, self.config.num_epochs
        done = s.epoch - 1 + (s.batch_idx_in_epoch > 0)  # epochs begun
        if done > asked:
            partial = s.batch_idx_in_epoch
            logger.warning(
                f"{path.name} has trained {s.epoch - 1} epoch(s)"
                + (f" and {partial} batch(es) of epoch {s.epoch}" if partial else "")
                + f", more than --num-epochs {asked}: nothing is trained, the exp dir's model "
                f"stays that one and config.json is left as it is. For a {asked}-epoch model, "
                f"decode --epoch {asked} (epoch-{asked}.pt, if kept) or train in another --exp-dir."
            )

    # ------------------------------------------------------------------ steps
    def _snapshot_norm_buffers(self) -> None:
        """Copy BatchNorm-like running stats, restored if the step turns out non-finite."""
        self._norm_snapshot = {
            f"{n}.{b}": t.detach().clone()
            for n, m in self.model.named_modules()
            if isinstance(m, nn.modules.batchnorm._NormBase)
            for b, t in m.named_buffers(recurse=False)
        }

    def _restore_norm_buffers(self) -> None:
        if not self._norm_snapshot:
            return
        bufs = dict(self.model.named_buffers())
        with torch.no_grad():
            for k, v in self._norm_snapshot.items():
                bufs[k].copy_(v)

    def _forward_backward(self, batch: Any) -> tuple[dict[str, float], float]:
        """One batch's forward and backward; DDP all-reduces the gradients only on the batch
        that ends an update (the others run under ``no_sync()``)."""
        if self._window_batches == 0:
            self._snapshot_norm_buffers()
        self.ddp_model.train()
        ends_update = self._window_batches + 1 >= self.config.accum_grad
        no_sync = self.dist.distributed and not ends_update
        with self.ddp_model.no_sync() if no_sync else contextlib.nullcontext():
            with self._autocast():
                loss, metrics, num_frames = self.compute_loss(
                    self.ddp_model, batch, self.state.num_updates
                )
            if not bool(torch.isfinite(loss.detach()).all()):
                self._window_bad = True
            scaled = loss / self.config.accum_grad
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self._window_batches += 1
        return metrics, float(num_frames)

    def _all_reduce_gradients(self) -> None:
        """Average the gradients over the ranks by hand: for an epoch's last, partial
        accumulation window, whose batches all ran under ``no_sync()``. A gradient that is None
        on every rank stays None (an unused or frozen parameter)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        present = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        torch.distributed.all_reduce(present)
        for p, on_some_rank in zip(params, present.tolist()):
            if on_some_rank == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.dist.world_size)

    def _optimizer_step(self, batch: Any) -> float:
        """End an update: clip, check, step (or skip); returns the gradient norm before clipping."""
        self.state.num_updates += 1
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        loss_bad = any_true(self._window_bad, self.dist, self.device)
        grad_bad = not math.isfinite(grad_norm)
        overflow = (
            self.scaler is not None and grad_bad and not loss_bad
        )  # fp16 scale too high: normal
        self._window_bad, self._window_batches = False, 0
        if overflow:
            self.scaler.step(self.optimizer)  # skips the step, lowers the scale
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return grad_norm
        if loss_bad or grad_bad:
            self._bad_step(batch, "loss" if loss_bad else "gradient")
            if self.scaler is not None:
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return grad_norm
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.consecutive_bad_steps = 0
        return grad_norm

    def _bad_step(self, batch: Any, what: str) -> None:
        self._restore_norm_buffers()
        s = self.state
        s.num_bad_steps += 1
        s.consecutive_bad_steps += 1
        logger.warning(
            f"Skipping optimizer step at batch {s.batch_idx_train}: non-finite {what} "
            f"({s.consecutive_bad_steps} in a row, {s.num_bad_steps} in total); cuts: {batch_cut_ids(batch)[:10]}"
        )
        self.sinks.write("train", s.batch_idx_train, {"num_bad_steps": float(s.num_bad_steps)})
        if s.consecutive_bad_steps >= self.config.max_bad_steps:
            path = self.exp_dir / f"bad-model-{s.batch_idx_train}.pt"
            self.save(path, extra={"bad_batch_cut_ids": batch_cut_ids(batch)})
            raise TrainingDivergedError(
                f"Stopping: {s.consecutive_bad_steps} consecutive steps had a non-finite {what} "
                f"(--max-bad-steps {self.config.max_bad_steps}). Saved {path} with the last batch's cut ids: "
                f"{batch_cut_ids(batch)[:10]}"
            )

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.valid_dl is None:
            return {}
        self.ddp_model.eval()
        tracker = MetricsTracker()
        bad_cuts: list[str] = []
        for batch in self.valid_dl:
            batch = move_to_device(batch, self.device)
            with self._autocast():
                loss, metrics, num_frames = self.compute_loss(
                    self.ddp_model, batch, self.state.num_updates
                )
            if not (
                bool(torch.isfinite(loss.detach()).all())
                and all(math.isfinite(v) for v in metrics.values())
            ):
                bad_cuts += batch_cut_ids(batch)  # a NaN cut must not make the average NaN
                continue
            tracker.add(metrics, float(num_frames))
        if bad_cuts:
            logger.warning(
                f"Validation: batches with a non-finite loss left out of the averages; their "
                f"{len(bad_cuts)} cuts: {bad_cuts[:10]}"
            )
        if self.dist.distributed:  # frame-weighted mean over ranks
            keys = sorted(tracker.sums)
            t = torch.tensor(
                [tracker.sums[k] for k in keys] + [tracker.frames],
                dtype=torch.float64,
                device=self.device,
            )
            torch.distributed.all_reduce(t)
            tracker.sums, tracker.frames = dict(zip(keys, t[:-1].tolist())), float(t[-1])
        values = tracker.averages()
        logger.info(
            f"Epoch {self.state.epoch}, batch_idx_train {self.state.batch_idx_train}, validation: {tracker.format(values)}"
        )
        self.sinks.write("valid", self.state.batch_idx_train, values)
        self.ddp_model.train()
        return values

    # ------------------------------------------------------------------ main loop
    def _log(
        self, tracker: MetricsTracker, grad_norm: float, t0: float, audio: float, epoch_audio: float
    ) -> None:
        s, elapsed = self.state, max(time.time() - t0, 1e-9)
        values = tracker.averages()
        lrs = self.scheduler.get_last_lr()
        updates = s.num_updates - self._log_updates
        self._log_updates = s.num_updates
        extra = {
            "lr": max(lrs),  # the base schedule's lr (groups may run at a fraction of it)
            "grad_norm": grad_norm,
            "audio_sec_per_sec": audio / elapsed,
            "num_bad_steps": float(s.num_bad_steps),
        }
        if updates > 0:  # this rank's audio times the ranks: the global batch actually trained
            extra["audio_sec_per_update"] = audio * self.dist.world_size / updates
        eta = ""
        if self.epoch_audio_seconds:
            left = max(self.epoch_audio_seconds / self.dist.world_size - epoch_audio, 0.0)
            eta = f", epoch ETA {format_duration(left / max(audio / elapsed, 1e-9))}"
        logger.info(
            f"Epoch {s.epoch}, batch {s.batch_idx_in_epoch}, batch_idx_train {s.batch_idx_train}, "
            f"update {s.num_updates}: "
            f"{tracker.format(values)}; lr={extra['lr']:.3e}, grad_norm={grad_norm:.3g}, "
            f"audio-s/s={extra['audio_sec_per_sec']:.1f}, "
            f"audio-s/update={extra.get('audio_sec_per_update', float('nan')):.0f}, "
            f"bad steps={s.num_bad_steps}{eta}"
        )
        self.sinks.write("train", s.batch_idx_train, {**values, **extra})

    def _batches(self):
        """The epoch's batches; one whose loading failed is saved as ``failed-batch-*.json``."""
        it = self._epoch_iterator()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                batch = None
            except BatchLoadError as e:
                step = self.state.batch_idx_train + 1
                save_failed_batch(
                    self.exp_dir, {"cut_ids": e.cut_ids}, step, self.dist.rank, str(e)
                )
                raise
            if self.rank_local_data:  # uneven ranks: the epoch ends when the first runs out
                if any_true(batch is None, self.dist, self.device):
                    return
            elif batch is None:
                return
            yield batch

    def _epoch_iterator(self):
        if self.resumed_mid_epoch:  # the DataLoader's iter() may draw from RNGs: restore after it
            it = iter(self.train_dl)
            self._restore_pending_rng()
        else:
            self._restore_pending_rng()
            self.sampler.set_epoch(self.state.epoch)
            it = iter(self.train_dl)
        self.resumed_mid_epoch = False
        return it

    def _restore_pending_rng(self) -> None:
        if self.pending_rng is not None:
            checkpoints.restore_rng_state(self.pending_rng, self.generators)
            self.pending_rng = None

    def train(self) -> TrainState:
        """Train from the current state to the end of ``num_epochs`` (or ``max_steps``).

        SIGTERM, SIGINT and SIGUSR1 stop it after the current step (all DDP ranks at the same
        one) with a checkpoint: :class:`TrainingInterrupted` is raised then. A second signal
        stops at once. The exp dir's lock is released at the end.
        """
        previous = self._install_signal_handlers()
        try:
            return self._train()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.sinks.close()
            if self._lock is not None:
                self._lock.release()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signals can only be handled in the main thread
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            self._stop_signum = signum
            signal.signal(signum, previous[signum])  # a second one acts at once
            logger.warning(
                f"Received {signal.Signals(signum).name}: stopping after this step with a "
                "checkpoint (send it again to stop at once, without one)"
            )

        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _stop_requested(self) -> bool:
        """Whether any rank got a stop signal (call at the same points on every rank)."""
        return any_true(self._stop_signum is not None, self.dist, self.device)

    def _stop(self, path: Path, saved: bool) -> None:
        """Write ``path`` unless ``saved``, log how to resume, raise :class:`TrainingInterrupted`."""
        if not saved:
            self.save(path)
        s = self.state
        error = TrainingInterrupted(self._stop_signum or signal.SIGTERM, path)
        logger.warning(
            f"{error} (epoch {s.epoch}, batch {s.batch_idx_in_epoch} of the epoch, "
            f"batch_idx_train {s.batch_idx_train})"
        )
        raise error

    def _train(self) -> TrainState:
        c, s = self.config, self.state
        if self.finished():  # (--max-steps reached: not one more step)
            return self.state
        stop = False
        while self.state.epoch <= c.num_epochs and not stop:
            s = self.state
            tracker, t0 = MetricsTracker(), time.time()
            audio = epoch_audio = grad_norm = (
                0.0  # audio seconds since the last log line / in the epoch
            )
            for batch in self._batches():
                batch = move_to_device(batch, self.device)
                try:
                    metrics, num_frames = self._forward_backward(batch)
                    s.batch_idx_train += 1
                    s.batch_idx_in_epoch += 1
                    updated = self._window_batches >= c.accum_grad
                    if updated:
                        grad_norm = self._optimizer_step(batch)
                except TrainingDivergedError:
                    raise
                except Exception as e:
                    save_failed_batch(
                        self.exp_dir, batch, s.batch_idx_train, self.dist.rank, repr(e)
                    )
                    raise
                tracker.add(metrics, num_frames)
                seconds = batch_audio_seconds(batch)
                audio += seconds
                epoch_audio += seconds
                stop = updated and c.max_steps > 0 and s.num_updates >= c.max_steps
                self._after_batch(tracker, grad_norm, t0, audio, epoch_audio, updated, stop)
                if s.batch_idx_train % c.log_interval == 0:
                    tracker, t0, audio = MetricsTracker(), time.time(), 0.0
                if stop:
                    break
            if s.batch_idx_in_epoch == 0 and not stop:
                raise RuntimeError(
                    f"Epoch {s.epoch} gave no batch: the sampler yields nothing (all cuts filtered out, "
                    "or --drop-last with buckets smaller than --max-duration; try --no-drop-last, "
                    "fewer --num-buckets or a smaller --max-duration)."
                )
            ended_mid_epoch = stop
            if self._window_batches > 0:  # partial accumulation window at the epoch end
                if self.dist.distributed:
                    self._all_reduce_gradients()
                self._optimizer_step(None)
                # an update like any other: --max-steps may end the run here (after this epoch's
                # validation and epoch-N.pt, which also stand for --valid-interval/--save-every-n)
                stop = c.max_steps > 0 and s.num_updates >= c.max_steps
            if ended_mid_epoch:
                break
            self.validate()
            s.epoch_done = True
            epoch_path = self.exp_dir / f"epoch-{s.epoch}.pt"
            self.save(epoch_path)
            if self.dist.is_main:
                checkpoints.remove_old_epochs(self.exp_dir, self.config.keep_last_epochs)
            self.state = s.next_epoch()
            if self._stop_requested():
                self._stop(epoch_path, saved=True)
        return self.state

    def _after_batch(self, tracker, grad_norm, t0, audio, epoch_audio, updated, stop) -> None:
        """Averaging and logging every so many batches; validation, checkpoints and stop
        requests every so many updates (``updated``: this batch ended one)."""
        c, s = self.config, self.state
        if self.model_avg is not None and s.batch_idx_train % c.average_period == 0:
            checkpoints.update_averaged_model(
                self.model_avg, self.model, c.average_period, s.batch_idx_train
            )
        if s.batch_idx_train % c.log_interval == 0:
            self._log(tracker, grad_norm, t0, audio, epoch_audio)
        if not updated:
            return
        if c.valid_interval > 0 and s.num_updates % c.valid_interval == 0:
            self.validate()
        save_now = c.save_every_n > 0 and s.num_updates % c.save_every_n == 0
        path = self.exp_dir / f"checkpoint-{s.batch_idx_train}.pt"
        if save_now or stop:
            self.save(path)
            if self.dist.is_main:
                checkpoints.remove_old_checkpoints(self.exp_dir, c.keep_last_k)
        if not stop and self._stop_requested():
            self._stop(path, saved=save_now)


_TRAINING_DEFAULTS = config_to_dict(TrainingConfig())


def _difference(key: str, saved: Any, now: Any) -> str:
    return f"{key} (checkpoint {saved!r}, now {now!r})"
