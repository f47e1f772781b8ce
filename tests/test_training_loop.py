"""The shared training loop on a toy model: learning, accumulation, schedule, numerical faults, flags."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

from w2vbert.training.config import TrainingConfig  # noqa: E402
from w2vbert.training.loop import TrainingDivergedError  # noqa: E402
from w2vbert.training.optim import (
    TransformerLrScheduler,
    noam_factor,
    param_groups_with_scales,
)  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_training_lowers_the_validation_loss(tmp_path):
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=2, save_every_n=0)
    )
    before = trainer.validate()["loss"]
    state = trainer.train()
    after = trainer.validate()["loss"]
    assert after < 0.7 * before
    assert state.epoch == 3 and state.batch_idx_train > 10
    assert (tmp_path / "epoch-1.pt").is_file() and (tmp_path / "epoch-2.pt").is_file()


def test_metrics_jsonl_has_train_and_valid_rows(tmp_path):
    toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, log_interval=2)
    ).train()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert {"loss", "lr", "grad_norm", "audio_sec_per_sec", "num_bad_steps"} <= set(train[0])
    assert any(r["split"] == "valid" for r in rows)


def test_accumulation_takes_one_optimizer_step_per_accum_grad_batches(tmp_path):
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, accum_grad=2, save_every_n=4)
    )
    state = trainer.train()
    assert trainer.scheduler.last_epoch == math.ceil(state.batch_idx_train / 2)


def test_nan_batch_is_skipped_and_counted(tmp_path, caplog):
    nan_cut = "toy-5"
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, max_bad_steps=3),
        nan_cuts=frozenset([nan_cut]),
    )
    with caplog.at_level(logging.WARNING):
        state = trainer.train()
    assert state.num_bad_steps >= 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(torch.isfinite(b).all() for b in trainer.model.buffers() if b.is_floating_point())
    assert "non-finite loss" in caplog.text and nan_cut in caplog.text
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("num_bad_steps", 0) >= 1 for r in rows)


def test_consecutive_bad_steps_stop_the_run_and_save_bad_model(tmp_path):
    all_cuts = frozenset(f"toy-{i}" for i in range(48))
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, max_bad_steps=3), nan_cuts=all_cuts
    )
    with pytest.raises(TrainingDivergedError, match="3 consecutive steps had a non-finite loss"):
        trainer.train()
    bad = torch.load(tmp_path / "bad-model-3.pt", weights_only=False)
    assert bad["bad_batch_cut_ids"] and set(bad["bad_batch_cut_ids"]) <= all_cuts
    assert bad["train_state"]["num_bad_steps"] == 3


def test_exception_in_a_step_saves_the_batch_cut_ids_and_reraises(tmp_path):
    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=1))

    def failing(model, batch, step):
        if step == 2:
            raise RuntimeError("boom")
        return toy_training.make_compute_loss()(model, batch, step)

    trainer.compute_loss = failing
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    info = json.loads((tmp_path / "failed-batch-2-rank0.json").read_text())
    assert info["cut_ids"] and info["reason"].startswith("RuntimeError")


def test_noam_schedule_peaks_at_base_lr_after_warmup():
    assert noam_factor(10, 10) == 1.0
    assert noam_factor(5, 10) == pytest.approx(0.5)
    assert noam_factor(40, 10) == pytest.approx(0.5)
    p = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    groups = param_groups_with_scales([("enc", [p[0]], 0.1, 3), ("new", [p[1]], 1.0, 0)])
    opt = torch.optim.Adam(groups, lr=2.0)
    sched = TransformerLrScheduler(opt, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [x[1] for x in lrs] == pytest.approx(
        [0.5, 1.0, 1.5, 2.0, 2.0 * math.sqrt(4 / 5), 2.0 * math.sqrt(4 / 6)]
    )
    assert [x[0] for x in lrs][:3] == [0.0, 0.0, 0.0]
    assert lrs[3][0] == pytest.approx(0.2)


def test_config_reports_every_problem_at_once(tmp_path):
    with pytest.raises(ValueError, match="(?s)num_epochs.*accum_grad.*exclusive"):
        TrainingConfig(exp_dir=tmp_path, num_epochs=0, accum_grad=0, use_fp16=True, use_bf16=True)


def test_fp16_on_cpu_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="--use-fp16 needs a CUDA device"):
        toy_training.build_trainer(toy_training.toy_config(tmp_path, use_fp16=True))


def test_training_flags_use_icefall_names_and_boolean_pairs(tmp_path):
    parser = argparse.ArgumentParser()
    TrainingConfig.add_arguments(parser, exp_dir=Path("exp/x"), base_lr=1e-3)
    args = parser.parse_args(
        [
            "--world-size",
            "2",
            "--num-epochs",
            "3",
            "--start-epoch",
            "2",
            "--no-tensorboard",
            "--use-bf16",
            "--save-every-n",
            "8",
            "--keep-last-k",
            "2",
            "--average-period",
            "5",
        ]
    )
    config = TrainingConfig.from_args(args)
    assert config.exp_dir == Path("exp/x") and config.base_lr == 1e-3
    assert (config.world_size, config.num_epochs, config.start_epoch) == (2, 3, 2)
    assert not config.tensorboard and config.use_bf16 and not config.use_fp16
    assert (config.save_every_n, config.keep_last_k, config.average_period) == (8, 2, 5)


def test_an_epoch_without_batches_is_a_clear_error(tmp_path):
    # 2 short cuts, --drop-last and batches of 4 s: every bucket is incomplete and dropped
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=2), num_cuts=2
    )
    with pytest.raises(RuntimeError, match="Epoch 1 gave no batch.*--no-drop-last"):
        trainer.train()
