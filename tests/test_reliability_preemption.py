"""Cluster cases (issue 20): pre-emption by a signal, one writer per exp dir, resumes that never lie.

Each run is a subprocess of tests/toy_training.py: the real Trainer, checkpoint code and Lhotse
sampler on a toy model (3 epochs of about 12 batches, a checkpoint every 4 batches).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training_resume import _assert_identical, _final

SCRIPT = Path(__file__).resolve().parent / "toy_training.py"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _start(exp_dir: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--exp-dir", str(exp_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _run(exp_dir: Path, *flags: str, expect_rc: int = 0) -> str:
    proc = _start(exp_dir, *flags)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == expect_rc, err[-3000:]
    return err


def _md5s(exp_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(exp_dir.glob("*.pt"))}


def _batch(path: Path) -> int:
    return torch.load(path, weights_only=False)["batch_idx_train"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    ref = tmp_path_factory.mktemp("ref")
    _run(ref)
    return _final(ref)


def test_sigterm_mid_step_saves_a_checkpoint_exits_143_and_resumes_bit_identically(
    tmp_path, reference
):
    exp = tmp_path / "exp"
    err = _run(exp, "--signal-at-step", "13", expect_rc=143)  # batch 14 of 36, mid-epoch 2
    assert "Received SIGTERM: stopping after this step with a checkpoint" in err
    assert "Stopped by SIGTERM; saved" in err and "Re-run the same command to resume" in err
    # the step in flight is finished and saved: no work lost
    assert _batch(exp / "checkpoint-14.pt") == 14
    assert not (exp / ".lock").exists()
    _run(exp)
    _assert_identical(reference, _final(exp))


def test_sigint_is_a_clean_stop_with_exit_130(tmp_path):
    exp = tmp_path / "exp"
    proc = _start(exp, "--step-sleep", "0.2")
    _wait_for(exp / "checkpoint-4.pt")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Stopped by SIGINT; saved" in err


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    start = time.time()
    while not path.exists():
        if time.time() - start > timeout:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_at_random_moments_loses_at_most_one_step_and_resumes_exactly(tmp_path, reference):
    rng = random.Random(20)
    interrupted = 0
    for trial in range(3):
        exp = tmp_path / f"exp{trial}"
        proc = _start(exp, "--step-sleep", "0.05")
        _wait_for(exp / ".lock")
        time.sleep(rng.uniform(0.3, 2.0))
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # it finished before the signal
        assert proc.returncode == 143, err[-2000:]
        interrupted += 1
        assert time.time() - sent < 30  # one step, a checkpoint: not the rest of the epoch
        saved = err.split("Stopped by SIGTERM; saved ")[1].split(".pt")[0] + ".pt"
        assert Path(saved).is_file()
        _run(exp)
        _assert_identical(reference, _final(exp))
    assert interrupted >= 2


@pytest.mark.slow
def test_sigterm_to_the_parent_of_two_ddp_ranks_stops_both_and_resumes_exactly(tmp_path):
    ref, exp = tmp_path / "ref", tmp_path / "exp"
    _run(ref, "--world-size", "2")
    proc = _start(exp, "--world-size", "2", "--step-sleep", "0.1")
    _wait_for(exp / "checkpoint-4.pt")
    proc.send_signal(signal.SIGTERM)  # the spawning parent: it passes the signal on
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-3000:]
    stopped = sorted(exp.glob("checkpoint-*.pt"))[-1]
    assert (exp / f"{stopped.name}.rank1").is_file()  # both ranks stopped at the same step
    _run(exp, "--world-size", "2")
    for rank in (0, 1):
        _assert_identical(_final(ref, rank), _final(exp, rank))


def test_a_second_writer_on_one_exp_dir_is_refused_naming_the_first(tmp_path, reference):
    exp = tmp_path / "exp"
    first = _start(exp, "--step-sleep", "0.1")
    _wait_for(exp / "checkpoint-4.pt")
    err = _run(exp, expect_rc=1)
    assert f"{exp} is in use: training by pid {first.pid} on this host" in err
    holder = json.loads((exp / ".lock").read_text())
    assert holder["pid"] == first.pid  # the refused writer left the lock alone
    first.wait(timeout=300)
    assert first.returncode == 0
    _assert_identical(reference, _final(exp))


def test_a_stale_lock_of_a_killed_writer_is_taken_over_with_a_warning(tmp_path, reference):
    exp = tmp_path / "exp"
    first = _start(exp, "--step-sleep", "0.1")
    _wait_for(exp / "checkpoint-4.pt")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert json.loads((exp / ".lock").read_text())["pid"] == first.pid
    err = _run(exp)
    assert f"Taking over the stale lock {exp / '.lock'} of training by pid {first.pid}" in err
    _assert_identical(reference, _final(exp))


def test_another_world_size_on_a_finished_run_resumes_at_its_end_and_changes_nothing(tmp_path):
    # a new GPU count is accepted at an epoch boundary (epoch-N.pt; mid-epoch it is refused:
    # tests/test_training_schedule.py); a finished run then has nothing left to train
    exp = tmp_path / "exp"
    _run(exp)
    before = _md5s(exp)
    _run(exp, "--world-size", "2")
    trained = {k: v for k, v in _md5s(exp).items() if not k.startswith("final-")}  # the toy's own
    assert trained == {k: v for k, v in before.items() if not k.startswith("final-")}
    assert _batch(exp / "final-rank1.pt") == _batch(exp / "final-rank0.pt") == _batch(exp / "epoch-3.pt")


def test_a_changed_learning_rate_is_refused_by_name_and_more_epochs_are_not(tmp_path):
    exp = tmp_path / "exp"
    _run(exp, "--num-epochs", "1")
    before = _md5s(exp)
    err = _run(exp, "--num-epochs", "2", "--base-lr", "0.01", expect_rc=1)
    assert "Cannot resume from" in err and "base_lr (checkpoint 0.05, now 0.01)" in err
    assert _md5s(exp) == before
    _run(exp, "--num-epochs", "2")  # training longer is a resume
    assert _batch(exp / "epoch-2.pt") > _batch(exp / "epoch-1.pt")
    assert _md5s(exp)["epoch-1.pt"] == before["epoch-1.pt"]


def test_the_pretrain_cli_refuses_another_lr_or_preset_before_writing_anything(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_corpus

    from w2vbert import pretrain

    train = tiny_corpus.make_cuts(tmp_path / "c", "train", 4)
    exp = tmp_path / "exp"
    argv = ["--train-cuts", str(train), "--model-preset", "tiny", "--exp-dir", str(exp),
            "--max-duration", "4", "--num-buckets", "2", "--warmup-steps", "5", "--device", "cpu",
            "--num-epochs", "1", "--base-lr", "1e-3", "--no-tensorboard"]  # fmt: skip
    pretrain.main(argv)
    config_before = (exp / "config.json").read_bytes()
    with pytest.raises(ValueError, match=r"base_lr \(checkpoint 0.001, now 0.005\)"):
        pretrain.main(argv[:-3] + ["--base-lr", "5e-3", "--no-tensorboard"])
    with pytest.raises(ValueError, match=r"model_config.model_dim \(checkpoint \d+, now \d+\)"):
        pretrain.main(argv + ["--model-dim", "48"])
    assert (exp / "config.json").read_bytes() == config_before


def test_config_json_keeps_the_history_of_a_resumed_run(tmp_path):
    from w2vbert.util.provenance import write_run_info

    write_run_info(tmp_path, {"training": {"num_epochs": 1, "base_lr": 0.001}})
    write_run_info(tmp_path, {"training": {"num_epochs": 3, "base_lr": 0.001}})
    info = json.loads((tmp_path / "config.json").read_text())
    assert info["config"]["training"]["num_epochs"] == 3
    assert [h["changed"] for h in info["history"]] == [{"training.num_epochs": 1}]
