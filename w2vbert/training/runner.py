"""One process's training job, shared by pre-training and fine-tuning.

An entry point builds a :class:`TaskSpec` factory (model, loss, datasets, cut filter, params) and
calls :func:`run_training` on every process; this module does the rest: distributed set-up,
logging, seeding, run provenance, data loading, the :class:`Trainer`, resume and clean-up.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from w2vbert.data.filters import CutFilter, scan
from w2vbert.data.fbank import check_feature_types
from w2vbert.model.conformer import ConformerEncoder
from w2vbert.data.sampling import (
    DataConfig,
    create_dataloader,
    create_sampler,
    load_cuts,
    sampler_state_dict,
)
from w2vbert.training.config import TrainingConfig
from w2vbert.training.ddp import DistInfo, cleanup_distributed, setup_distributed
from w2vbert.training.loop import ComputeLoss, Trainer, TrainState
from w2vbert.training.optim import create_optimizer, create_scheduler
from w2vbert.util.dataclass_args import config_to_dict
from w2vbert.util.log import setup_logging
from w2vbert.util.provenance import peak_rss_gib, write_run_info

logger = logging.getLogger(__name__)


@dataclass
class TaskSpec:
    """What a training task provides to :func:`run_training`."""

    kind: str  # "pretrain" or "finetune"
    model: nn.Module  # on the training device
    compute_loss: ComputeLoss
    param_groups: list[dict[str, Any]]  # optimizer param groups (lr_scale, frozen_steps optional)
    train_dataset: torch.utils.data.Dataset
    valid_dataset: torch.utils.data.Dataset
    make_cut_filter: Callable[[], CutFilter]
    params: dict[str, Any]  # saved in every checkpoint; must include "model_config"
    find_unused_parameters: bool = False
    fbank: str = "icefall"  # the model's fbank kind: stored features must be of it
    run_info: dict[str, Any] = field(default_factory=dict)  # extra entries for config.json


def resolve_device(kind: str, info: DistInfo) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available.")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_training(
    build_task: Callable[[torch.device], TaskSpec],
    train_config: TrainingConfig,
    data_config: DataConfig,
    extra_config: dict[str, Any] | None = None,
) -> TrainState:
    """Train on this process (rank from the environment); returns the final training state."""
    kind = (
        "cuda"
        if train_config.device == "cuda"
        or (train_config.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    info = setup_distributed(kind)
    try:
        exp_dir = train_config.exp_dir
        log_path = setup_logging(exp_dir / "log", "log-train", info.rank, info.world_size)
        device = resolve_device(train_config.device, info)
        seed_everything(train_config.seed + info.rank)
        task = build_task(device)
        if train_config.activation_checkpointing:
            blocks = [m for m in task.model.modules() if isinstance(m, ConformerEncoder)]
            for encoder in blocks:
                encoder.activation_checkpointing = True
            logger.info(f"Activation checkpointing in {len(blocks)} conformer stacks")

        def loader(path, flag: str, dataset, train: bool) -> torch.utils.data.DataLoader:
            """The DataLoader of ``path`` (filtered by the task), sharded by rank."""
            cuts = load_cuts(path, flag, needs_features=not data_config.on_the_fly_feats)
            if not data_config.on_the_fly_feats:
                check_feature_types(cuts, task.fbank, f"{flag} {path}")
            cuts = cuts.filter(task.make_cut_filter())
            sampler = create_sampler(
                cuts,
                data_config,
                train=train,
                world_size=info.world_size,
                rank=info.rank,
                seed=train_config.seed,
            )
            return create_dataloader(dataset, sampler, data_config.num_workers, train_config.seed)

        epoch_seconds = None
        if data_config.scan_cuts and info.is_main:
            _, epoch_seconds = scan(
                load_cuts(data_config.train_cuts, "--train-cuts", manifest_only=True),
                task.make_cut_filter(),
                f"--train-cuts {data_config.train_cuts}",
            )
            logger.info(f"Training data per epoch: {epoch_seconds / 3600:.2f} h")
        train_dl = loader(data_config.train_cuts, "--train-cuts", task.train_dataset, train=True)
        valid_dl = None
        if data_config.valid_cuts is not None:
            valid_dl = loader(
                data_config.valid_cuts, "--valid-cuts", task.valid_dataset, train=False
            )

        optimizer = create_optimizer(task.param_groups, train_config)
        trainer = Trainer(
            model=task.model,
            compute_loss=task.compute_loss,
            optimizer=optimizer,
            scheduler=create_scheduler(optimizer, train_config),
            train_dl=train_dl,
            valid_dl=valid_dl,
            config=train_config,
            params=task.params,
            dist_info=info,
            device=device,
            sampler_state_fn=sampler_state_dict,
            find_unused_parameters=task.find_unused_parameters,
            epoch_audio_seconds=epoch_seconds,
            data_settings=config_to_dict(data_config),
        )
        trainer.maybe_resume()  # refuses other settings before anything is written
        if info.is_main:
            config = {
                "training": config_to_dict(train_config),
                "data": config_to_dict(data_config),
                **(extra_config or {}),
                "params": task.params,
                **task.run_info,
            }
            info_path = write_run_info(exp_dir, config)
            logger.info(f"Log file {log_path}; resolved config, git sha, versions in {info_path}")
            num_params = sum(p.numel() for p in task.model.parameters())
            logger.info(f"Task {task.kind}: {num_params / 1e6:.2f} M parameters on {device}")

        state = trainer.train()
        logger.info(
            f"Done: batch_idx_train {state.batch_idx_train}, {state.num_bad_steps} skipped steps, "
            f"peak RSS {peak_rss_gib():.2f} GiB"
        )
        return state
    finally:
        cleanup_distributed()
