"""One process's training job, shared by pre-training and fine-tuning.

An entry point builds a :class:`TaskSpec` factory (model, loss, datasets, cut filter, params) and
calls :func:`run_training` on every process; this module does the rest: distributed set-up,
logging, seeding, run provenance, data loading, the :class:`Trainer`, resume and clean-up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from w2vbert.checkpoint import seed_everything
from w2vbert.checkpoint.identity import input_record
from w2vbert.data.filters import CutFilter, scan
from w2vbert.data.fbank import check_feature_types
from w2vbert.data.shar import is_shar_dir
from w2vbert.model.conformer import ConformerEncoder
from w2vbert.data.sampling import (
    DataConfig,
    create_dataloader,
    create_sampler,
    load_cuts,
    load_train_cuts,
    sampler_state_dict,
)
from w2vbert.training.config import TrainingConfig
from w2vbert.training.ddp import (
    DistInfo,
    check_shared_directory,
    cleanup_distributed,
    setup_distributed,
)
from w2vbert.training.loop import ComputeLoss, Trainer, TrainState
from w2vbert.training.optim import create_optimizer, create_scheduler
from w2vbert.training.plan import TrainingPlan, resolve_accumulation
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


class _HeldRecords(logging.Handler):
    """Keeps the log records of the start-up until the log file exists (:meth:`replay_into`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def replay_into(self, path: Path | None) -> None:
        """Write the kept records to the file handler of ``path`` (they went to stderr already)
        and stop keeping them."""
        root = logging.getLogger()
        root.removeHandler(self)
        for handler in root.handlers:
            if path is not None and getattr(handler, "baseFilename", None) == str(path.absolute()):
                for record in self.records:
                    handler.handle(record)
        self.records = []


def _hashing(cuts: Iterable[Any], digest: Any, texts: bool) -> Iterator[Any]:
    """``cuts``, feeding each one's id (and transcripts, with ``texts``) into ``digest`` on the
    way."""
    for cut in cuts:
        fields = [cut.id]
        if texts:
            fields += [s.text or "" for s in getattr(cut, "supervisions", None) or ()]
        digest.update("\t".join(fields).encode() + b"\n")
        yield cut


def resolve_device(kind: str, info: DistInfo) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available.")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def compile_blocks(encoders: list[ConformerEncoder]) -> None:
    """``torch.compile`` every conformer block in place (dynamic shapes: batches vary in length);
    parameter names, and so checkpoints, stay those of the eager model."""
    blocks = [b for e in encoders for b in e.blocks]
    for block in blocks:
        block.compile(dynamic=True)
    logger.info(f"torch.compile: {len(blocks)} conformer blocks (the first batches are slow)")


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
    info = setup_distributed(kind, train_config.dist_timeout_minutes)
    held = _HeldRecords()
    try:
        exp_dir = train_config.exp_dir
        # stderr only until the run is known to go ahead: a refused run writes no log file
        setup_logging(None, "log-train", info.rank, info.world_size)
        logging.getLogger().addHandler(held)
        given_accum, recorded_data = train_config.accum_grad, data_config
        train_config, per_rank = resolve_accumulation(
            train_config, data_config.max_duration, info.world_size
        )
        if train_config.global_batch_duration > 0:
            logger.info(
                f"--global-batch-duration {train_config.global_batch_duration:g} s on "
                f"{info.world_size} rank(s) with --max-duration {data_config.max_duration:g}: "
                f"--accum-grad {train_config.accum_grad} (was {given_accum}), batches of <= "
                f"{per_rank:g} s per rank"
            )
            # the sampler's bound; checkpoints and config.json record the given --max-duration
            # (the bound follows from it, the global batch and the world size)
            data_config = dataclasses.replace(data_config, max_duration=per_rank)
        device = resolve_device(train_config.device, info)
        check_shared_directory(exp_dir, info, device)
        seed_everything(train_config.seed + info.rank)
        task = build_task(device)
        encoders = [m for m in task.model.modules() if isinstance(m, ConformerEncoder)]
        if train_config.activation_checkpointing:
            for encoder in encoders:
                encoder.activation_checkpointing = True
            logger.info(f"Activation checkpointing in {len(encoders)} conformer stacks")
        if train_config.compile:
            compile_blocks(encoders)

        train_names = " ".join(map(str, data_config.train_cuts or ()))
        needs_features = not data_config.on_the_fly_feats

        def loader(
            cuts, name: str, dataset, train: bool, rank_local: bool = False
        ) -> torch.utils.data.DataLoader:
            """The DataLoader of ``cuts`` (filtered by the task), sharded by rank (``rank_local``:
            ``cuts`` are already this rank's own)."""
            if not data_config.on_the_fly_feats:
                check_feature_types(cuts, task.fbank, name)
            cuts = cuts.filter(task.make_cut_filter())
            sampler = create_sampler(
                cuts,
                data_config,
                train=train,
                world_size=1 if rank_local else info.world_size,
                rank=0 if rank_local else info.rank,
                seed=train_config.seed,
            )
            return create_dataloader(dataset, sampler, data_config.num_workers, train_config.seed)

        # every rank scans (the same file, at the same time): none waits for rank 0 at a
        # collective, and a bad file stops every rank with the same message
        epoch_seconds = None
        paths = data_config.train_cuts or ()
        shar = len(paths) == 1 and is_shar_dir(paths[0])
        # Shar under DDP: each rank reads its own shards (w2vbert/data/shar.py)
        rank_local = shar and info.distributed
        train_cuts = load_train_cuts(
            paths, "--train-cuts", train_config.seed, needs_features=needs_features,
            **({"split_by_rank": True} if rank_local else {}),
        )  # fmt: skip
        if data_config.scan_cuts:
            # Shar: the cut manifests only (no feature or audio shards read)
            scan_cuts = (
                load_cuts(paths[0], "--train-cuts", manifest_only=True) if shar else train_cuts
            )
            # what it trains on: the ids (and the transcripts that fine-tuning learns), read by
            # the scan anyway
            ids = hashlib.sha256()
            _, epoch_seconds = scan(
                _hashing(scan_cuts, ids, texts=task.kind == "finetune"),
                task.make_cut_filter(),
                f"--train-cuts {train_names}",
            )
            if not rank_local:  # (a rank's own shards differ from the other ranks')
                inputs = task.params.setdefault("inputs", {})
                inputs["train_cuts"] = input_record(ids.hexdigest(), train_names)
            logger.info(f"Training data per epoch: {epoch_seconds / 3600:.2f} h")
        train_dl = loader(
            train_cuts, f"--train-cuts {train_names}", task.train_dataset, True, rank_local
        )
        valid_dl = None
        if data_config.valid_cuts is not None:
            valid_dl = loader(
                load_cuts(data_config.valid_cuts, "--valid-cuts", needs_features=needs_features),
                f"--valid-cuts {data_config.valid_cuts}",
                task.valid_dataset,
                False,
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
            rank_local_data=rank_local,
            data_settings=recorded_data.settings(),
        )
        trainer.maybe_resume()  # refuses other settings and inputs before anything is written
        log_path = setup_logging(exp_dir / "log", "log-train", info.rank, info.world_size)
        held.replay_into(log_path)
        finished = trainer.finished()
        if info.is_main and finished:
            logger.info(
                f"Nothing to train: {exp_dir} has finished its run (epoch "
                f"{trainer.state.epoch - 1}, update {trainer.state.num_updates}); no checkpoint "
                "is written, config.json is left as it is"
            )
        if info.is_main and not finished:
            config = {
                "training": config_to_dict(train_config),
                "data": config_to_dict(recorded_data),
                **(extra_config or {}),
                "params": task.params,
                **task.run_info,
            }
            info_path = write_run_info(exp_dir, config)
            logger.info(f"Log file {log_path}; resolved config, git sha, versions in {info_path}")
            num_params = sum(p.numel() for p in task.model.parameters())
            logger.info(f"Task {task.kind}: {num_params / 1e6:.2f} M parameters on {device}")
            plan = TrainingPlan(
                world_size=info.world_size,
                accum_grad=train_config.accum_grad,
                max_duration=data_config.max_duration,
                epoch_seconds=epoch_seconds,
                num_epochs=train_config.num_epochs,
                max_steps=train_config.max_steps,
                num_parameters=sum(p.numel() for e in encoders for p in e.parameters()),
                compiled=train_config.compile,
                warmup_steps=train_config.warmup_steps,
            )
            logger.info(plan.describe())
            for warning in plan.warnings():
                logger.warning(warning)

        state = trainer.train()
        logger.info(
            f"Done: batch_idx_train {state.batch_idx_train}, {state.num_bad_steps} skipped steps, "
            f"peak RSS {peak_rss_gib():.2f} GiB"
        )
        return state
    finally:
        logging.getLogger().removeHandler(held)
        cleanup_distributed()
