"""A tiny training job on the real training machinery (Trainer, checkpoints, Lhotse sampler) with a toy model.

Used by tests/test_training_*.py (in-process and as a subprocess) and tests/resume_at_random_points.py.
Every source of randomness a real job has is here: a shuffling bucketing sampler, python/numpy/torch
noise in the dataset, dropout, a torch.Generator inside the model (like span masking), a
step-derived value (like the Gumbel temperature) and the averaged model.

    python tests/toy_training.py --exp-dir DIR [--kill-at-step K] [--kill-while-saving N]
        [--signal-at-step K] [--step-sleep S] [--base-lr LR] [--world-size 2]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from w2vbert import checkpoint as ckpt_io  # noqa: E402
from w2vbert.data.sampling import (
    DataConfig,
    create_dataloader,
    create_sampler,
    sampler_state_dict,
)  # noqa: E402
from w2vbert.training.config import TrainingConfig  # noqa: E402
from w2vbert.training.ddp import (
    DistInfo,
    cleanup_distributed,
    launch,
    setup_distributed,
)  # noqa: E402
from w2vbert.training.loop import Trainer  # noqa: E402
from w2vbert.training.optim import create_optimizer, create_scheduler  # noqa: E402
from w2vbert.util import atomic  # noqa: E402

FEAT_DIM = 8


def toy_cuts(num_cuts: int = 48, prefix: str = "toy") -> CutSet:
    """Cuts of 0.3-1.5 s (durations only; the toy dataset makes features from the cut id)."""
    cuts = []
    for i in range(num_cuts):
        c = dummy_cut(i, duration=0.3 + (i * 7 % 13) / 10)
        cuts.append(c.with_id(f"{prefix}-{i}"))
    return CutSet.from_cuts(cuts)


class ToyDataset(torch.utils.data.Dataset):
    """CutSet -> ``features`` (N, T, 8), ``feature_lens``, ``targets`` (N, T), ``cut_ids``; noisy."""

    def __init__(self, nan_cuts: frozenset[str] = frozenset()) -> None:
        self.nan_cuts = nan_cuts

    def __getitem__(self, cuts: CutSet) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        lens = [max(int(c.duration * 10), 1) for c in cuts]
        feats = torch.zeros(len(cuts), max(lens), FEAT_DIM)
        for i, (c, n) in enumerate(zip(cuts, lens)):
            g = torch.Generator().manual_seed(zlib.crc32(c.id.encode()))
            feats[i, :n] = torch.randn(n, FEAT_DIM, generator=g)
            if c.id in self.nan_cuts:
                feats[i, 0, 0] = float("nan")
        feats = (
            feats
            + 0.05 * torch.randn_like(feats) * random.random()
            + float(np.random.rand()) * 0.01
        )
        w = torch.linspace(-1, 1, FEAT_DIM)
        return {
            "features": feats,
            "feature_lens": torch.tensor(lens),
            "targets": torch.tanh(feats @ w),
            "durations": torch.tensor([c.duration for c in cuts]),
            "cut_ids": [c.id for c in cuts],
        }


class ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEAT_DIM, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1)
        )
        self.norm = nn.BatchNorm1d(FEAT_DIM)
        self.mask_generator = torch.Generator().manual_seed(1234)
        self.temperature = 2.0

    def set_num_updates(self, step: int) -> None:
        self.temperature = max(2.0 * 0.99**step, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        keep = (torch.rand(x.shape[:2], generator=self.mask_generator) > 0.1).to(x.dtype)
        return self.net(x * keep.unsqueeze(-1)).squeeze(-1) * (1.0 + 0.01 * self.temperature)


def make_compute_loss(kill_at_step: int = -1, step_sleep: float = 0.0, signal_at_step: int = -1):
    def compute_loss(model: nn.Module, batch: dict, step: int):
        if step == kill_at_step:
            os._exit(17)  # a kill: no clean-up, no flush
        if step == signal_at_step and model.training:
            os.kill(os.getpid(), signal.SIGTERM)  # pre-emption in the middle of a step
        if step_sleep > 0:
            time.sleep(step_sleep)
        inner = model.module if hasattr(model, "module") else model
        inner.set_num_updates(step)
        pred = model(batch["features"])
        lens = batch["feature_lens"]
        mask = (torch.arange(pred.shape[1])[None, :] < lens[:, None]).to(pred.dtype)
        loss = (((pred - batch["targets"]) ** 2) * mask).sum() / mask.sum()
        return loss, {"loss": float(loss.detach())}, float(mask.sum())

    return compute_loss


def build_trainer(
    config: TrainingConfig,
    info: DistInfo = DistInfo(),
    kill_at_step: int = -1,
    nan_cuts: frozenset[str] = frozenset(),
    num_cuts: int = 48,
    step_sleep: float = 0.0,
    signal_at_step: int = -1,
    max_duration: float = 4.0,
) -> Trainer:
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    data = DataConfig(max_duration=max_duration, num_buckets=2, shuffle=True, drop_last=True)
    sampler = create_sampler(
        toy_cuts(num_cuts),
        data,
        train=True,
        world_size=info.world_size,
        rank=info.rank,
        seed=config.seed,
    )
    valid_sampler = create_sampler(
        toy_cuts(8, "valid"),
        data,
        train=False,
        world_size=info.world_size,
        rank=info.rank,
        seed=config.seed,
    )
    model = ToyModel()
    optimizer = create_optimizer(model.parameters(), config)
    return Trainer(
        model=model,
        compute_loss=make_compute_loss(kill_at_step, step_sleep, signal_at_step),
        optimizer=optimizer,
        scheduler=create_scheduler(optimizer, config),
        train_dl=create_dataloader(ToyDataset(nan_cuts), sampler, seed=config.seed),
        valid_dl=create_dataloader(ToyDataset(), valid_sampler, seed=config.seed),
        config=config,
        params={"kind": "toy", "model_config": {"feat_dim": FEAT_DIM}},
        dist_info=info,
        sampler_state_fn=sampler_state_dict,
    )


def toy_config(exp_dir: Path, **kw) -> TrainingConfig:
    base = dict(
        exp_dir=Path(exp_dir),
        num_epochs=3,
        base_lr=0.05,
        warmup_steps=5,
        save_every_n=4,
        keep_last_k=3,
        average_period=2,
        log_interval=5,
        valid_interval=7,
        tensorboard=False,
        seed=7,
        device="cpu",
    )
    base.update(kw)
    return TrainingConfig(**base)


def _run(args: argparse.Namespace) -> None:
    info = setup_distributed("cpu")
    torch.set_num_threads(1)
    config = toy_config(
        args.exp_dir,
        num_epochs=args.num_epochs,
        world_size=args.world_size,
        accum_grad=args.accum_grad,
        save_every_n=args.save_every_n,
        base_lr=args.base_lr,
    )
    trainer = build_trainer(
        config,
        info,
        kill_at_step=args.kill_at_step,
        step_sleep=args.step_sleep,
        signal_at_step=args.signal_at_step,
    )
    allreduce_calls = [0]
    if args.count_allreduce and info.distributed:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def counting_hook(state, bucket):
            allreduce_calls[0] += 1
            return allreduce_hook(state, bucket)

        trainer.ddp_model.register_comm_hook(None, counting_hook)
    if args.kill_while_saving > 0:

        def hook(path: Path) -> None:
            if path.name == f"checkpoint-{args.kill_while_saving}.pt":
                os._exit(18)

        atomic.after_temp_write_hook = hook
    trainer.maybe_resume()
    epoch_batches: dict[int, int] = {}  # this process's batches per epoch
    loss_fn = trainer.compute_loss

    def counting_loss(model, batch, step):
        if model.training:
            epoch_batches[trainer.state.epoch] = epoch_batches.get(trainer.state.epoch, 0) + 1
        return loss_fn(model, batch, step)

    trainer.compute_loss = counting_loss
    trainer.train()
    final = {
        "model": trainer.model.state_dict(),
        "model_avg": trainer.model_avg,
        "batch_idx_train": trainer.state.batch_idx_train,
        "num_updates": trainer.state.num_updates,
        "epoch_batches": epoch_batches,
        "allreduce_calls": allreduce_calls[0],
    }
    ckpt_io.atomic_torch_save(final, Path(args.exp_dir) / f"final-rank{info.rank}.pt")
    cleanup_distributed()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--num-epochs", type=int, default=3)
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument("--accum-grad", type=int, default=1)
    p.add_argument("--save-every-n", type=int, default=4)
    p.add_argument("--kill-at-step", type=int, default=-1, help="os._exit when this step starts")
    p.add_argument(
        "--kill-while-saving", type=int, default=0, help="os._exit between temp write and rename"
    )
    p.add_argument("--base-lr", type=float, default=0.05)
    p.add_argument(
        "--count-allreduce", action="store_true", help="count DDP's gradient all-reduces"
    )
    p.add_argument(
        "--signal-at-step", type=int, default=-1, help="SIGTERM to itself during this step"
    )
    p.add_argument(
        "--step-sleep",
        type=float,
        default=0.0,
        help="seconds to sleep per step (widens kill windows)",
    )
    args = p.parse_args(argv)
    launch(_run, (args,), args.world_size, master_port=29500 + os.getpid() % 1000)


if __name__ == "__main__":
    main()
