"""Issue 9, resume cases not covered by tests/test_training_resume.py and tests/test_checkpoint.py:
a checkpoint written by a run with another --world-size is refused, naming it and both sizes
(each rank's sampler position lives in its own side file and cannot be re-sharded)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_training  # noqa: E402

from w2vbert import checkpoint as ckpt_io  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")


def test_resume_from_a_checkpoint_of_another_world_size_is_refused_naming_it(tmp_path):
    config = toy_training.toy_config(tmp_path, num_epochs=1, max_steps=4, save_every_n=4)
    toy_training.build_trainer(config).train()
    newest = ckpt_io.resume_candidates(tmp_path)[0]
    ckpt = ckpt_io.load_checkpoint(newest)
    ckpt["params"]["world_size"] = 2  # as written by rank 0 of a 2-process run
    ckpt_io.atomic_torch_save(ckpt, newest)
    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=2))
    with pytest.raises(
        ValueError,
        match=rf"Checkpoint {newest} was written with --world-size 2, but this run has 1",
    ):
        trainer.maybe_resume()


def test_a_finished_run_started_again_trains_nothing_and_writes_no_file(tmp_path):
    toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=1)).train()
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")}
    again = toy_training.build_trainer(toy_training.toy_config(tmp_path, num_epochs=1))
    assert again.maybe_resume() == tmp_path / "epoch-1.pt"
    steps = again.state.batch_idx_train
    assert again.train().batch_idx_train == steps > 0
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")} == files
