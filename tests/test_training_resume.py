"""Exact resume after kills (including one during a checkpoint write), and DDP on 2 CPU processes.

Each run is a subprocess of tests/toy_training.py (the real Trainer, checkpoint code and Lhotse
sampler on a toy model); a kill is ``os._exit`` at the start of a step or between writing a
checkpoint's temp file and renaming it. tests/resume_at_random_points.py does the same with SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent / "toy_training.py"


def _run(exp_dir: Path, *flags: str, expect_rc: int = 0) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--exp-dir", str(exp_dir), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == expect_rc, proc.stderr[-3000:]


def _final(exp_dir: Path, rank: int = 0) -> dict:
    return torch.load(exp_dir / f"final-rank{rank}.pt", weights_only=False)


def _assert_identical(a: dict, b: dict) -> None:
    assert a["batch_idx_train"] == b["batch_idx_train"]
    for key in ("model", "model_avg"):
        if a[key] is None and b[key] is None:
            continue
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"


@pytest.mark.slow
def test_run_killed_at_three_points_and_during_a_save_resumes_bit_identically(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _run(ref)
    _run(killed, "--kill-at-step", "6", expect_rc=17)  # mid-epoch 1
    _run(killed, "--kill-while-saving", "16", expect_rc=18)  # temp file written, not renamed
    assert any(p.name.startswith(".partial-") and p.name.endswith(".checkpoint-16.pt") for p in killed.iterdir())
    assert not (killed / "checkpoint-16.pt").exists()
    _run(killed, "--kill-at-step", "29", expect_rc=17)  # epoch 3, after an epoch boundary
    _run(killed)
    _assert_identical(_final(ref), _final(killed))
    assert not any(p.name.startswith(".partial-") for p in killed.iterdir())


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_equal_and_resumes_bit_identically(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _run(ref, "--world-size", "2", "--num-epochs", "2")
    r0, r1 = _final(ref, 0), _final(ref, 1)
    assert r0["batch_idx_train"] > 5
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    assert (ref / "checkpoint-4.pt.rank1").is_file() or (ref / "checkpoint-8.pt.rank1").is_file()
    _run(killed, "--world-size", "2", "--num-epochs", "2", "--kill-at-step", "9", expect_rc=1)
    _run(killed, "--world-size", "2", "--num-epochs", "2")
    _assert_identical(_final(ref, 0), _final(killed, 0))
