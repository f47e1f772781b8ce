"""Issue 9, numerical faults not covered by tests/test_training_loop.py: a non-finite gradient with
a finite loss is skipped like a NaN loss, and skipped steps are counted in TensorBoard."""

import logging
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")


def test_inf_gradient_with_finite_loss_skips_the_step_and_is_counted_in_tensorboard(
    tmp_path, caplog
):
    trainer = toy_training.build_trainer(
        toy_training.toy_config(tmp_path, num_epochs=1, tensorboard=True, max_bad_steps=3)
    )
    real_loss, hooks, seen = trainer.compute_loss, [], {}

    def loss_with_inf_gradient_at_step_3(model, batch, step):
        for h in hooks:
            h.remove()
        hooks.clear()
        if step == 3:
            weight = model.net[0].weight
            seen["before"] = weight.detach().clone()
            hooks.append(weight.register_hook(lambda g: torch.full_like(g, float("inf"))))
        if step == 4:
            seen["after"] = model.net[0].weight.detach().clone()
        loss, metrics, frames = real_loss(model, batch, step)
        if step == 3:
            seen["loss"] = float(loss)
        return loss, metrics, frames

    trainer.compute_loss = loss_with_inf_gradient_at_step_3
    with caplog.at_level(logging.WARNING):
        state = trainer.train()
    assert torch.isfinite(torch.tensor(seen["loss"]))
    assert "Skipping optimizer step at batch 4: non-finite gradient" in caplog.text
    assert state.num_bad_steps == 1 and state.batch_idx_train > 5
    assert torch.equal(seen["before"], seen["after"])  # the step was not taken
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    bad = [(e.step, e.value) for e in events.Scalars("train/num_bad_steps")]
    assert (4, 1.0) in bad
