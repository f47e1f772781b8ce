"""Checkpoint files: atomic writes, keep-last-k, fallback from a corrupt newest file, averaging, RNG."""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

from w2vbert import checkpoint as ckpt_io  # noqa: E402
from w2vbert.checkpoint.averaging import (  # noqa: E402
    average_checkpoints,
    averaged_model_from_epochs,
    averaging_suffix,
    init_averaged_model,
    update_averaged_model,
)

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")


def test_atomic_save_round_trips(tmp_path):
    obj = {"w": torch.arange(5.0), "step": 3}
    ckpt_io.atomic_torch_save(obj, tmp_path / "checkpoint-3.pt")
    back = ckpt_io.load_checkpoint(tmp_path / "checkpoint-3.pt")
    assert torch.equal(back["w"], obj["w"]) and back["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-3.pt"]


def test_failed_write_leaves_the_previous_file_intact_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-8.pt"
    ckpt_io.atomic_torch_save({"v": 1}, path)

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ckpt_io.atomic_torch_save({"v": 2}, path)
    monkeypatch.undo()
    assert ckpt_io.load_checkpoint(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-8.pt"]


def test_find_checkpoints_orders_by_batch_number_not_name(tmp_path):
    for n in (8, 100, 20):
        (tmp_path / f"checkpoint-{n}.pt").write_bytes(b"x")
    (tmp_path / "checkpoint-20.pt.rank1").write_bytes(b"x")
    (tmp_path / "epoch-1.pt").write_bytes(b"x")
    assert [p.name for p in ckpt_io.find_checkpoints(tmp_path)] == [
        "checkpoint-100.pt",
        "checkpoint-20.pt",
        "checkpoint-8.pt",
    ]


def test_keep_last_k_removes_older_checkpoints_and_their_rank_files(tmp_path):
    for n in (4, 8, 12, 16):
        (tmp_path / f"checkpoint-{n}.pt").write_bytes(b"x")
        (tmp_path / f"checkpoint-{n}.pt.rank1").write_bytes(b"x")
    (tmp_path / "epoch-1.pt").write_bytes(b"x")
    ckpt_io.remove_old_checkpoints(tmp_path, keep_last_k=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-12.pt",
        "checkpoint-12.pt.rank1",
        "checkpoint-16.pt",
        "checkpoint-16.pt.rank1",
        "epoch-1.pt",
    ]


def test_training_keeps_only_the_last_k_checkpoints(tmp_path):
    toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, save_every_n=2, keep_last_k=2)
    ).train()
    assert len(ckpt_io.find_checkpoints(tmp_path)) == 2


def test_keep_last_epochs_removes_older_epoch_files_only(tmp_path):
    for n in (1, 2, 9, 10):
        (tmp_path / f"epoch-{n}.pt").write_bytes(b"x")
    (tmp_path / "epoch-1.pt.rank1").write_bytes(b"x")
    (tmp_path / "checkpoint-4.pt").write_bytes(b"x")
    (tmp_path / "epoch-10-avg-5.pt").write_bytes(b"x")  # an averaged model: not an epoch file
    ckpt_io.remove_old_epochs(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-4.pt", "epoch-10-avg-5.pt", "epoch-10.pt", "epoch-9.pt"
    ]  # fmt: skip


def test_training_keeps_only_the_last_epoch_files(tmp_path):
    config = toy_training.toy_config(tmp_path, num_epochs=3, keep_last_epochs=2)
    toy_training.build_trainer(config).train()
    assert sorted(p.name for p in ckpt_io.find_epoch_checkpoints(tmp_path)) == [
        "epoch-2.pt", "epoch-3.pt"
    ]  # fmt: skip


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, save_every_n=4, keep_last_k=0)
    ).train()
    newest = ckpt_io.resume_candidates(tmp_path)[0]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # truncated, as by a crash of a non-atomic writer
    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=1))
    with caplog.at_level(logging.WARNING):
        resumed = trainer.maybe_resume()
    assert newest.name in caplog.text
    assert resumed is not None and resumed != newest
    assert resumed == ckpt_io.resume_candidates(tmp_path)[0]


def test_resume_prefers_the_epoch_file_over_a_checkpoint_at_the_same_step(tmp_path):
    toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, save_every_n=1)
    ).train()
    assert ckpt_io.resume_candidates(tmp_path)[0].name == "epoch-1.pt"


def test_averaging_two_identical_checkpoints_is_the_identity(tmp_path):
    model = toy_training.ToyModel()
    sd = model.state_dict()
    for name in ("a.pt", "b.pt"):
        ckpt_io.atomic_torch_save({"model": sd}, tmp_path / name)
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert all(torch.equal(avg[k], sd[k]) and avg[k].dtype == sd[k].dtype for k in sd)


def test_running_average_equals_the_mean_over_sampled_steps():
    model = torch.nn.Linear(2, 1)
    avg = init_averaged_model(model)
    seen = []
    for step in range(1, 7):
        with torch.no_grad():
            model.weight.add_(step)
        if step % 2 == 0:
            update_averaged_model(avg, model, average_period=2, batch_idx_train=step)
            seen.append(model.weight.detach().double().clone())
    # icefall's update weighs the initial model by 0 at step = average_period: the mean of the samples
    expected = torch.stack(seen).mean(0)
    assert torch.allclose(avg["weight"], expected, atol=1e-12)


def test_use_averaged_model_gives_the_mean_between_two_epochs(tmp_path):
    sd = {"w": torch.zeros(3)}
    # steps 1..10 with model value = step; avg after n steps = (n + 1) / 2
    for epoch, n in ((1, 4), (2, 10)):
        avg = {"w": torch.full((3,), (n + 1) / 2, dtype=torch.float64)}
        ckpt_io.atomic_torch_save(
            {"model": sd, "model_avg": avg, "batch_idx_train": n, "params": {"kind": "t"}},
            tmp_path / f"epoch-{epoch}.pt",
        )
    state, params = averaged_model_from_epochs(tmp_path, epoch=2, avg=1, use_averaged_model=True)
    assert torch.allclose(state["w"], torch.full((3,), 7.5))  # mean of 5..10
    assert state["w"].dtype == torch.float32 and params["kind"] == "t"
    assert averaging_suffix(2, 1, True) == "epoch-2-avg-1-use-averaged-model"
    with pytest.raises(ValueError, match="--epoch > --avg"):
        averaged_model_from_epochs(tmp_path, epoch=2, avg=2, use_averaged_model=True)


def test_rng_state_round_trip_includes_model_generators():
    gens = {"masker": torch.Generator().manual_seed(3)}
    state = ckpt_io.capture_rng_state(gens)
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(1),
        torch.rand(1, generator=gens["masker"]),
    )
    ckpt_io.restore_rng_state(state, gens)
    second = (
        random.random(),
        np.random.rand(),
        torch.rand(1),
        torch.rand(1, generator=gens["masker"]),
    )
    assert (
        first[:2] == second[:2]
        and torch.equal(first[2], second[2])
        and torch.equal(first[3], second[3])
    )


def test_find_generators_finds_generators_inside_submodules():
    model = torch.nn.Sequential(toy_training.ToyModel())
    assert list(ckpt_io.find_generators(model)) == ["0.mask_generator"]
