"""The schedule of a run in updates: the accumulation a global batch needs, and the plan printed at start.

A global batch is given in seconds of audio per update summed over all ranks
(``--global-batch-duration``), so that one value means the same training on 1 GPU or 64:
``accum_grad = ceil(G / (world_size * max_duration))``, and each rank's batches are then bounded
by ``G / (world_size * accum_grad)`` seconds (<= ``--max-duration``), so that an update holds at
most G seconds whatever the GPU count (without it 64 GPUs x 1440 s would be 3 x 30720 s). The plan turns the epoch's audio (from the
start-up scan), the global batch and ``--max-steps``/``--num-epochs`` into updates, epochs and an
estimate of GPU-hours from this project's measured H200 throughput.
"""

from __future__ import annotations

import dataclasses
import math

from w2vbert.training.config import TrainingConfig

# bench/gpu/h200-compile-b96.json and h200-eager.json (batch 96 x 15 s): the XL pre-training step
# (w2v-BERT loss, bf16, fused AdamW) on one H200, in audio seconds per second.
H200_XL_AUDIO_SECONDS_PER_SECOND = {"compile": 3620.5, "eager": 2875.5}
XL_ENCODER_PARAMETERS = 0.6e9  # the paper's XL (and the bench's); the estimate scales by size


def resolve_accumulation(
    config: TrainingConfig, max_duration: float, world_size: int
) -> tuple[TrainingConfig, float]:
    """``(config with accum_grad derived from global_batch_duration, the per-rank batch bound)``;
    without a global batch: ``(config, max_duration)`` unchanged.

    ``max_duration``: seconds of audio per batch and rank that fit the device (the sampler's bound).
    """
    if config.global_batch_duration <= 0:
        return config, max_duration
    if config.accum_grad != 1:
        raise ValueError(
            f"Give either --global-batch-duration ({config.global_batch_duration}) or "
            f"--accum-grad ({config.accum_grad}), not both: the first derives the second."
        )
    accum = max(1, math.ceil(config.global_batch_duration / (world_size * max_duration)))
    per_rank = min(max_duration, config.global_batch_duration / (world_size * accum))
    return dataclasses.replace(config, accum_grad=accum), per_rank


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """How long a run is, in updates, epochs and (estimated) GPU-hours."""

    world_size: int
    accum_grad: int
    max_duration: float  # per batch and rank
    epoch_seconds: float | None  # kept training audio per epoch (None: not scanned)
    num_epochs: int
    max_steps: int  # 0: num_epochs decides
    num_parameters: int
    compiled: bool
    warmup_steps: int = 0  # the lr schedule's linear warm-up (0: none)

    @property
    def update_seconds(self) -> float:
        """Upper bound of the audio per update (full buckets), all ranks together."""
        return self.world_size * self.accum_grad * self.max_duration

    @property
    def updates_per_epoch(self) -> float | None:
        """At least this many (batches are rarely full): epoch audio / update audio."""
        if self.epoch_seconds is None:
            return None
        return self.epoch_seconds / self.update_seconds

    @property
    def total_updates(self) -> float | None:
        """Whichever ends the run first: ``--max-steps`` or ``--num-epochs``."""
        per_epoch = self.updates_per_epoch
        by_epochs = None if per_epoch is None else self.num_epochs * per_epoch
        if self.max_steps <= 0:
            return by_epochs
        return float(self.max_steps) if by_epochs is None else min(float(self.max_steps), by_epochs)

    def warnings(self) -> list[str]:
        """Settings that do not fit the run's length: a warm-up of the lr longer than the run
        (its peak is then never reached; the Noam schedule keeps lr <= base_lr * step / warm-up)."""
        total = self.total_updates
        if total is None or self.warmup_steps <= 0 or self.warmup_steps <= total:
            return []
        return [
            f"--warmup-steps {self.warmup_steps} is longer than the whole run (~{total:,.0f} "
            f"updates; more when batches are not full, ~1.2x on short utterances): the lr never "
            f"reaches --base-lr, it ends at ~{total / self.warmup_steps:.2g} x --base-lr (its "
            f"mean over the run: ~{total / self.warmup_steps / 2:.2g} x). Give a warm-up of a few "
            "hundred to a few thousand updates, a small share of the run."
        ]

    def gpu_hours(self) -> float | None:
        """Estimated GPU-hours on H200s: the measured XL throughput scaled by parameter count."""
        updates = self.total_updates
        if updates is None or self.num_parameters <= 0:
            return None
        measured = H200_XL_AUDIO_SECONDS_PER_SECOND["compile" if self.compiled else "eager"]
        per_gpu = measured * XL_ENCODER_PARAMETERS / self.num_parameters
        return updates * self.update_seconds / per_gpu / 3600

    def describe(self) -> str:
        lines = [
            (
                f"{self.world_size} rank(s) x {self.accum_grad} batch(es) of <= "
                f"{self.max_duration:g} s = <= {self.update_seconds:g} s of audio per update"
            )
        ]
        per_epoch, total = self.updates_per_epoch, self.total_updates
        if per_epoch is not None:
            lines.append(
                f"{self.epoch_seconds / 3600:.3g} h per epoch = >= {per_epoch:,.1f} updates per epoch"
            )
        if total is not None:
            epochs = total / per_epoch if per_epoch else float("nan")
            limit = f"--max-steps {self.max_steps}" if self.max_steps else "--num-epochs"
            at_least = "" if self.max_steps and total == self.max_steps else ">= "
            lines.append(
                f"{at_least}{total:,.0f} updates ({limit}) = {epochs:.2f} epochs of at most "
                f"{self.num_epochs}"
            )
        hours = self.gpu_hours()
        if hours is not None:
            mode = "compiled" if self.compiled else "eager"
            lines.append(
                f"~{hours:,.3g} H200 GPU-hours (~{hours / self.world_size:,.3g} h wall on "
                f"{self.world_size}), from bench/gpu's {mode} XL step scaled to "
                f"{self.num_parameters / 1e6:.3g}M parameters"
            )
        return "Plan: " + "; ".join(lines)
