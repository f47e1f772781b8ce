"""Issue 17: a schedule that scales. Everything that follows the training's progress counts updates
(warm-up, Gumbel temperature, --max-steps, checkpoints, validation), so that 1 x B and 2 x B/2
train the same schedule; gradients are all-reduced once per update; a new GPU count resumes at
an epoch boundary and is refused mid-epoch, naming both sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

from w2vbert.training.config import TrainingConfig  # noqa: E402
from w2vbert.training.plan import TrainingPlan, resolve_accumulation  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")
SCRIPT = Path(__file__).resolve().parent / "toy_training.py"


def _trace(tmp_path: Path, accum_grad: int, max_duration: float, **kw) -> tuple[dict, list]:
    """Train the toy job; per update k (1-based) the lr it ran with and the temperature its
    batches saw, and the saved checkpoints' update counts."""
    config = toy_training.toy_config(
        tmp_path, accum_grad=accum_grad, num_epochs=2, warmup_steps=4, **kw
    )
    trainer = toy_training.build_trainer(config, max_duration=max_duration)
    seen: dict[int, tuple[float, float]] = {}
    loss_fn = trainer.compute_loss

    def traced(model, batch, step):
        out = loss_fn(model, batch, step)
        if model.training:
            # the lr the coming update k = step + 1 uses, and the temperature set from `step`
            lr = trainer.scheduler.get_lr()[0] if trainer._window_batches == 0 else None
            temperature = model.temperature
            k = step + 1
            if lr is not None:
                seen[k] = (lr, temperature)
            assert seen[k][1] == temperature  # every batch of an update sees the same value
        return out

    trainer.compute_loss = traced
    trainer.train()
    saved = sorted(
        torch.load(p, weights_only=False)["train_state"]["num_updates"]
        for p in tmp_path.glob("checkpoint-*.pt")
    )
    return seen, saved


def test_lr_temperature_and_intervals_follow_updates_not_batches(tmp_path):
    one, saved_one = _trace(tmp_path / "1xB", 1, 4.0, save_every_n=3, keep_last_k=0, max_steps=7)
    two, saved_two = _trace(tmp_path / "2xB2", 2, 2.0, save_every_n=3, keep_last_k=0, max_steps=7)
    assert sorted(one) == sorted(two) == list(range(1, 8))  # --max-steps 7: 7 updates each
    for k in one:
        assert one[k] == pytest.approx(two[k], rel=1e-12), f"update {k}"
    assert one[4][0] == pytest.approx(0.05)  # peak lr at the end of the 4-update warm-up
    # checkpoints every 3 updates (3, 6) and the last one (7), in both runs
    assert saved_one == saved_two == [3, 6, 7]


def test_global_batch_derives_the_accumulation_for_any_gpu_count(tmp_path):
    config = TrainingConfig(exp_dir=tmp_path, global_batch_duration=4800.0)
    for max_duration, ranks, accum, per_rank in [
        (600.0, 1, 8, 600.0), (600.0, 8, 1, 600.0),
        (500.0, 4, 3, 400.0),  # 4 x 3 x 500 would be 6000 s: batches bounded by 400 s instead
        (1440.0, 64, 1, 75.0),  # 64 GPUs x 1440 s would be 19x the target
    ]:  # fmt: skip
        resolved, bound = resolve_accumulation(config, max_duration, ranks)
        assert (resolved.accum_grad, bound) == (accum, per_rank)
        assert ranks * accum * bound == pytest.approx(4800.0)  # the target, on any GPU count
    plain = TrainingConfig(exp_dir=tmp_path, accum_grad=3)
    assert resolve_accumulation(plain, 600.0, 4) == (plain, 600.0)
    with pytest.raises(ValueError, match="either --global-batch-duration .* or --accum-grad"):
        resolve_accumulation(TrainingConfig(exp_dir=tmp_path, global_batch_duration=10.0, accum_grad=2), 1.0, 1)


def test_plan_gives_updates_epochs_and_gpu_hours():
    # the paper's run: 2048 utterances (~30k s) per update, 400k updates, XL on 64 GPUs
    plan = TrainingPlan(
        world_size=64, accum_grad=1, max_duration=480.0, epoch_seconds=60_000 * 3600.0,
        num_epochs=1000, max_steps=400_000, num_parameters=600_000_000, compiled=True,
    )  # fmt: skip
    assert plan.update_seconds == 30720.0
    assert plan.updates_per_epoch == pytest.approx(60_000 * 3600 / 30720)
    assert plan.total_updates == 400_000
    hours = 400_000 * 30720 / 3620.5 / 3600
    assert plan.gpu_hours() == pytest.approx(hours)
    text = plan.describe()
    assert "400,000 updates (--max-steps 400000) = 56.89 epochs" in text
    assert f"~{hours:,.3g} H200 GPU-hours" in text


def test_plan_warns_when_the_lr_warm_up_is_longer_than_the_run():
    # issue 27's AN4 run: 1.92 h per epoch in 30 s batches, 14 epochs, the default 25k warm-up
    run = dict(world_size=1, accum_grad=1, max_duration=30.0, epoch_seconds=1.915 * 3600,
               num_epochs=14, max_steps=0, num_parameters=5_700_000, compiled=False)  # fmt: skip
    total = 14 * 1.915 * 3600 / 30
    (warning,) = TrainingPlan(**run, warmup_steps=25_000).warnings()
    assert f"--warmup-steps 25000 is longer than the whole run (~{total:,.0f} updates" in warning
    assert f"ends at ~{total / 25_000:.2g} x --base-lr" in warning
    assert f">= {total:,.0f} updates (--num-epochs)" in TrainingPlan(**run).describe()
    assert TrainingPlan(**run, warmup_steps=500).warnings() == []
    assert TrainingPlan(**run).warnings() == []  # no warm-up
    assert TrainingPlan(**{**run, "epoch_seconds": None}, warmup_steps=25_000).warnings() == []


def _run(exp_dir: Path, *flags: str, expect_rc: int = 0) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--exp-dir", str(exp_dir), *flags],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == expect_rc, proc.stderr[-3000:]
    return proc.stderr


def _final(exp_dir: Path, rank: int = 0) -> dict:
    return torch.load(exp_dir / f"final-rank{rank}.pt", weights_only=False)


@pytest.mark.slow
def test_ddp_all_reduces_once_per_update_and_ranks_stay_equal(tmp_path):
    _run(tmp_path, "--world-size", "2", "--num-epochs", "2", "--accum-grad", "3", "--count-allreduce")
    r0, r1 = _final(tmp_path, 0), _final(tmp_path, 1)
    # one all-reduce per full window of 3 batches; an epoch's last, partial window is reduced
    # by hand (not through DDP's hook); its update is one of num_updates all the same
    full = sum(n // 3 for n in r0["epoch_batches"].values())
    partial = sum(1 for n in r0["epoch_batches"].values() if n % 3)
    assert r0["allreduce_calls"] == r1["allreduce_calls"] == full > 0
    assert r0["num_updates"] == full + partial
    assert r0["allreduce_calls"] < r0["batch_idx_train"] / 2
    for k in r0["model"]:  # gradients agreed on every update, the partial ones included
        assert torch.equal(r0["model"][k], r1["model"][k]), k


@pytest.mark.slow
def test_new_world_size_resumes_at_an_epoch_boundary_and_is_refused_mid_epoch(tmp_path):
    _run(tmp_path, "--num-epochs", "1", "--accum-grad", "2")  # 1 process, epoch-1.pt
    done = torch.load(tmp_path / "epoch-1.pt", weights_only=False)["train_state"]
    # 2 processes, accumulation 1 (as a --global-batch-duration would derive): from epoch 2 on
    _run(tmp_path, "--num-epochs", "2", "--world-size", "2", "--accum-grad", "1")
    r0, r1 = _final(tmp_path, 0), _final(tmp_path, 1)
    assert r0["num_updates"] > done["num_updates"]
    assert set(r0["epoch_batches"]) == {2}  # epoch 1 was not trained again
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    # mid-epoch 3 (a checkpoint every 2 updates), then back to 1 process: refused, by name
    kill = str(r0["num_updates"] + 3)
    _run(tmp_path, "--num-epochs", "3", "--world-size", "2", "--save-every-n", "2", "--kill-at-step", kill, expect_rc=1)
    log = _run(tmp_path, "--num-epochs", "3", expect_rc=1)
    assert re.search(r"written with --world-size 2, but this run has 1: it is in the middle of epoch 3", log)
    assert "--start-epoch 3 (from epoch-2.pt" in log


@pytest.mark.slow
def test_compiled_blocks_keep_parameter_names_and_compute_what_eager_blocks_do():
    import copy

    from w2vbert.model.conformer import ConformerBlock, ConformerEncoder
    from w2vbert.training.runner import compile_blocks

    torch.manual_seed(0)
    blocks = [ConformerBlock(model_dim=32, num_heads=4, ffn_dim=64, conv_kernel_size=5) for _ in range(2)]
    eager = ConformerEncoder(blocks, head_dim=8)
    compiled = copy.deepcopy(eager)
    compile_blocks([compiled])  # what --compile does
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints unchanged
    x = torch.randn(3, 40, 32, requires_grad=True)
    pad = torch.zeros(3, 40, dtype=torch.bool)
    pad[1, 33:] = True
    a, b = eager(x, pad), compiled(x, pad)
    assert torch.allclose(a, b, atol=1e-5)
    (ga,), (gb,) = torch.autograd.grad(a.sum(), x), torch.autograd.grad(b.sum(), x)
    assert torch.allclose(ga, gb, atol=1e-5)


def test_max_steps_that_lands_on_an_epochs_partial_window_stops_there(tmp_path):
    config = toy_training.toy_config(tmp_path / "one", num_epochs=1, accum_grad=4, save_every_n=0)
    one = toy_training.build_trainer(config).train()  # one epoch: its number of updates
    assert one.batch_idx_train % 4 != 0  # the epoch ends with a partial window
    config = toy_training.toy_config(
        tmp_path / "max", num_epochs=3, accum_grad=4, save_every_n=0, max_steps=one.num_updates
    )
    trainer = toy_training.build_trainer(config)
    state = trainer.train()
    assert state.num_updates == one.num_updates  # not one more, in the next epoch
    assert state.batch_idx_train == one.batch_idx_train and state.epoch == 2  # epoch 1 finished
    assert (tmp_path / "max" / "epoch-1.pt").is_file() and not (tmp_path / "max" / "epoch-2.pt").exists()


def test_an_explicit_earlier_start_sets_the_later_checkpoints_aside(tmp_path):
    # e.g. --start-epoch 2 with another GPU count: the first run's later files must neither be
    # resumed from nor make the new run's own files the "oldest" for pruning
    toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2, keep_last_k=0)).train()
    later = sorted(p.name for p in tmp_path.glob("*.pt") if p.name != "epoch-1.pt"
                   and torch.load(p, weights_only=False)["train_state"]["epoch"] == 2)  # fmt: skip
    assert "epoch-2.pt" in later and len(later) > 1
    again = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2, start_epoch=2, keep_last_k=0))
    assert again.maybe_resume() == tmp_path / "epoch-1.pt"
    (aside,) = tmp_path.glob("superseded-*")
    assert sorted(p.name for p in aside.iterdir()) == later
    assert not (tmp_path / "epoch-2.pt").exists()
    again.train()
    third = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=3, keep_last_k=0))
    assert third.maybe_resume() == tmp_path / "epoch-2.pt"  # the new run's, not a set-aside one
