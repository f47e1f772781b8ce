"""TrainingConfig: every knob of the shared training loop, and its command-line flags (icefall names)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    dataclass_from_args,
    flag,
)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """The training loop's settings.

    Schedules count **updates** (optimizer steps; one per ``accum_grad`` batches): warm-up, the
    Gumbel temperature, ``max_steps``, ``save_every_n`` and ``valid_interval``, so that they do not
    change with the GPU count or the accumulation. Logging and model averaging count batches
    (icefall's ``batch_idx_train``, which also names ``checkpoint-<batch_idx_train>.pt``); with
    ``accum_grad = 1`` the two counters are the same.
    """

    exp_dir: Path = flag(Path("exp"), "Experiment directory: checkpoints, log/, tensorboard/.")
    num_epochs: int = flag(10, "Number of epochs to train (the last epoch number).")
    start_epoch: int = flag(
        1, "Resume from epoch-(start_epoch-1).pt when > 1 (default: newest checkpoint, if any)."
    )
    start_batch: int = flag(
        0, "Resume from checkpoint-<start_batch>.pt when > 0 (overrides --start-epoch)."
    )
    resume: bool = flag(
        True, "Resume automatically from the newest complete checkpoint in --exp-dir."
    )
    stale_inputs: str = flag(
        "refuse",
        "When the newest checkpoint was trained on other inputs (BPE model, --init-from weights, "
        "training cuts, compared by content): refuse to resume, naming them; or set-aside: move "
        "the exp dir's checkpoints and records to <exp-dir>/stale-<time>/ and train from scratch "
        "(run.sh does).",
        choices=("refuse", "set-aside"),
    )
    max_steps: int = flag(
        0, "Stop after this many updates (optimizer steps) in total (0: no limit: --num-epochs)."
    )
    optimizer: str = flag("adam", "Optimizer.", choices=("adam", "adamw"))
    base_lr: float = flag(2e-3, "Peak learning rate of the Transformer (Noam) schedule.")
    warmup_steps: int = flag(
        25000, "Optimizer steps of linear warm-up; then lr decays as 1/sqrt(step)."
    )
    adam_beta1: float = flag(0.9, "Adam beta1.")
    adam_beta2: float = flag(0.98, "Adam beta2.")
    adam_eps: float = flag(1e-9, "Adam epsilon.")
    weight_decay: float = flag(0.0, "Weight decay (decoupled for adamw, L2 for adam).")
    grad_clip: float = flag(5.0, "Clip the global gradient 2-norm to this value (<= 0: no clipping).")
    accum_grad: int = flag(
        1,
        "Batches per rank whose gradients are summed per update (gradients are all-reduced "
        "over the ranks once per update, on its last batch). Derived from "
        "--global-batch-duration when that is given.",
    )
    global_batch_duration: float = flag(
        0.0,
        "Target seconds of audio per update summed over all ranks (0: use --accum-grad). "
        "--accum-grad becomes ceil(this / (world_size * --max-duration)), so the same value "
        "gives the same schedule on 1 GPU or 64; buckets are rarely full, so the real batch is "
        "a little smaller (logged as audio seconds per update).",
    )
    compile: bool = flag(
        False,
        "torch.compile each conformer block (dynamic shapes; a slow first minutes, then ~25 %% "
        "faster on an H200, bench/gpu). Checkpoints are the same as without it.",
    )
    dist_timeout_minutes: float = flag(
        60.0,
        "Timeout of the DDP process group's collectives (torch's default is 10 min): the "
        "start-up scans every training cut on every rank before the first collective.",
    )
    activation_checkpointing: bool = flag(
        False,
        "Recompute each conformer block's activations in the backward pass instead of storing "
        "them (about a third more compute, a fraction of the activation memory; the same "
        "numbers). For the 0.6B w2v-BERT 2.0 encoder on one GPU.",
    )
    use_fp16: bool = flag(False, "fp16 autocast with a GradScaler (GPU only).")
    use_bf16: bool = flag(False, "bf16 autocast (GPU; on CPU only if also --bf16-on-cpu).")
    bf16_on_cpu: bool = flag(False, "Allow --use-bf16 on CPU.")
    save_every_n: int = flag(
        4000, "Write checkpoint-<batch_idx_train>.pt every this many updates (0: never)."
    )
    keep_last_k: int = flag(30, "Keep only the newest k checkpoint-<batch>.pt files (0: keep all).")
    keep_last_epochs: int = flag(
        0,
        "Keep only the newest k epoch-N.pt files (0: keep all, as icefall). Each holds the model, "
        "the averaged model and the optimizer state; decoding with --avg A needs A + 1.",
    )
    average_period: int = flag(200, "Update the averaged model every this many batches.")
    log_interval: int = flag(50, "Log training metrics every this many batches.")
    valid_interval: int = flag(
        3000, "Validate every this many updates (and at each epoch end; 0: epoch end only)."
    )
    tensorboard: bool = flag(True, "Write TensorBoard scalars to <exp-dir>/tensorboard.")
    seed: int = flag(42, "Random seed (python, numpy, torch, sampler).")
    world_size: int = flag(1, "Number of DDP processes (spawned here, or read from torchrun's env).")
    master_port: int = flag(
        12354, "TCP port of the DDP rendezvous when --world-size > 1 spawns processes."
    )
    max_bad_steps: int = flag(
        20, "Stop after this many consecutive steps with a NaN/inf loss or gradient."
    )
    device: str = flag(
        "auto", "Device: auto (cuda if available), cpu or cuda.", choices=("auto", "cpu", "cuda")
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` listing every invalid setting."""
        problems = []
        for name in (
            "num_epochs",
            "start_epoch",
            "accum_grad",
            "average_period",
            "log_interval",
            "world_size",
        ):
            if getattr(self, name) < 1:
                problems.append(f"`{name}` must be >= 1, but is {getattr(self, name)} instead.")
        for name in (
            "start_batch",
            "max_steps",
            "save_every_n",
            "keep_last_k",
            "keep_last_epochs",
            "valid_interval",
            "warmup_steps",
        ):
            if getattr(self, name) < 0:
                problems.append(f"`{name}` must be >= 0, but is {getattr(self, name)} instead.")
        if self.max_bad_steps < 1:
            problems.append(f"`max_bad_steps` must be >= 1, but is {self.max_bad_steps} instead.")
        if self.base_lr <= 0:
            problems.append(f"`base_lr` must be > 0, but is {self.base_lr} instead.")
        if self.use_fp16 and self.use_bf16:
            problems.append("`use_fp16` and `use_bf16` are exclusive, but both are set.")
        if self.global_batch_duration < 0:
            problems.append(
                f"`global_batch_duration` must be >= 0, but is {self.global_batch_duration} instead."
            )
        if self.dist_timeout_minutes <= 0:
            problems.append(
                f"`dist_timeout_minutes` must be > 0, but is {self.dist_timeout_minutes} instead."
            )
        if problems:
            raise ValueError("Invalid TrainingConfig:\n  " + "\n  ".join(problems))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, **defaults: Any) -> None:
        """Add the training flags; ``defaults`` (field=value) change defaults per entry point."""
        add_dataclass_arguments(parser.add_argument_group("training"), cls, defaults)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> "TrainingConfig":
        return dataclass_from_args(cls, args, **overrides)
