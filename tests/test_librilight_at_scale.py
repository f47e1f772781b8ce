"""Issue 17's end-to-end check of the path to Libri-Light on a cluster, at toy size: a simulated
Libri-Light tree through stages 0-4 of the librilight configuration (VAD segments joined, the
pre-training cuts written as Shar), pre-training on 2 torchrun processes (gloo) reading the Shar;
kill -9 of the whole job mid-training, then the same command resumes it and ends with the model
the uninterrupted run has (README: "Scaling up"; the guarantee: w2vbert/data/shar.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from data_fixtures import make_librilight_tree, make_librispeech_tree
from lhotse import load_manifest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--corpus", "librilight", "--bpe-vocab-size", "30", "--pretrain-preset", "tiny",
        "--pretrain-epochs", "3", "--pretrain-max-duration", "25", "--pretrain-lr", "1e-3",
        "--librilight-max-cut-duration", "20", "--shar-shard-size", "4",
        "--pretrain-extra-args", "--warmup-steps 10 --log-interval 2 --num-buckets 2 --save-every-n 2",
        "--launcher", "torchrun", "--num-gpus", "2"]  # fmt: skip


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _run_sh(tmp: Path, exp: str, *options: str, kill_when=None) -> subprocess.Popen | subprocess.CompletedProcess:
    args = ["./run.sh", "--exp-dir", str(tmp / exp), "--data-dir", str(tmp / "data"),
            "--download-dir", str(tmp / "download"), *TINY, *options]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_when is None:
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while not kill_when() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    for pid in [proc.pid, *_descendants(proc.pid)]:  # kill -9 of everything: run.sh, torchrun, ranks
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return proc


@pytest.mark.slow
def test_librilight_shar_torchrun_pretraining_survives_kill_9(tmp_path):
    make_librispeech_tree(tmp_path / "corpora" / "LibriSpeech")
    make_librilight_tree(tmp_path / "corpora" / "LibriLight", ("small",), num_speakers=2, minutes=2.0)
    trees = ["--librispeech-dir", str(tmp_path / "corpora" / "LibriSpeech"),
             "--librilight-dir", str(tmp_path / "corpora" / "LibriLight")]  # fmt: skip
    out = _run_sh(tmp_path, "ref", *trees, "--stage", "0", "--stop-stage", "4")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # joined VAD segments, written as Shar shards of 4 cuts that stage 4 read
    sups = load_manifest(tmp_path / "data/manifests/librilight_supervisions_small.jsonl.gz")
    assert all(s.duration <= 20.0 for s in sups) and max(s.duration for s in sups) > 15.0
    shar = tmp_path / "data/fbank/librilight_shar_pretrain"
    assert len(list(shar.glob("cuts.*.jsonl*"))) == -(-len(sups) // 4) > 1
    assert list(shar.glob("features.*.tar"))
    log = (tmp_path / "ref/log/stage-4-pretrain.log").read_text()
    assert "torchrun --standalone --nproc-per-node 2 --shutdown-timeout 600 -m w2vbert.pretrain" in log
    assert f"--train-cuts {shar}" in log
    assert (tmp_path / "ref/pretrain/checkpoint-2.pt.rank1").is_file()  # 2 ranks trained
    ref = torch.load(tmp_path / "ref/pretrain/epoch-3.pt", weights_only=False)

    # the same stage 4, killed with SIGKILL once its first mid-training checkpoint is complete
    # (rank 0's file is renamed last, after the ranks' side files)
    killed = tmp_path / "killed"
    _run_sh(tmp_path, "killed", *trees, "--stage", "4", "--stop-stage", "4",
            kill_when=lambda: any((killed / "pretrain").glob("checkpoint-*.pt")))  # fmt: skip
    assert not (killed / "pretrain/epoch-3.pt").exists()
    out = _run_sh(tmp_path, "killed", *trees, "--stage", "4", "--stop-stage", "4")  # re-run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = (killed / "log/stage-4-pretrain.log").read_text()
    assert "Resumed from" in log and "Taking over the stale lock" in log
    resumed = torch.load(killed / "pretrain/epoch-3.pt", weights_only=False)
    assert resumed["train_state"] == ref["train_state"]
    for k, v in ref["model"].items():  # the uninterrupted run's model, bit for bit
        assert torch.equal(v, resumed["model"][k]), k
