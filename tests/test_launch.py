"""Issue 17: the training launcher (utils/launch.sh: local, torchrun, SLURM) and the start-up check
that every node sees the same exp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

STUBS = r"""
set -euo pipefail
python() { echo "python $*"; }
torchrun() { echo "torchrun $*"; }
srun() { echo "srun $*"; }
scontrol() { printf 'gpu-node-07\ngpu-node-08\n'; }
"""


def _launch(settings: str, *args: str) -> subprocess.CompletedProcess:
    script = f"{STUBS}\n{settings}\n. {ROOT}/utils/launch.sh\nlaunch_training w2vbert.pretrain {' '.join(args)}\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={**os.environ, "SLURM_JOB_ID": ""})


def test_each_launcher_composes_its_command():
    one = _launch("", "--exp-dir exp")
    assert one.stdout.strip() == "python -m w2vbert.pretrain --exp-dir exp"  # as before launchers
    assert "launch: python -m w2vbert.pretrain --exp-dir exp" in one.stderr  # logged
    two = _launch("num_gpus=2", "--exp-dir exp")
    assert two.stdout.strip() == "python -m w2vbert.pretrain --exp-dir exp --world-size 2"
    tr = _launch("launcher=torchrun; num_gpus=8", "--exp-dir exp")
    assert tr.stdout.strip() == (
        "torchrun --standalone --nproc-per-node 8 --shutdown-timeout 600 -m w2vbert.pretrain --exp-dir exp "
        "--world-size 8"
    )
    nodes = _launch("launcher=torchrun; num_gpus=8; num_nodes=2; rdzv_endpoint=node1:29400", "--x 1")
    assert nodes.stdout.strip() == (
        "torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint node1:29400 "
        "--rdzv-id w2vbert-pretrain --shutdown-timeout 600 -m w2vbert.pretrain --x 1 --world-size 16"
    )
    slurm = _launch(
        "launcher=slurm; num_gpus=8; num_nodes=2; SLURM_JOB_ID=4242; SLURM_JOB_NODELIST='gpu-node-[07-08]'; "
        "slurm_args='--cpus-per-task 32'",
        "--x 1",
    )
    assert slurm.stdout.strip() == (
        "srun --nodes 2 --ntasks-per-node 1 --kill-on-bad-exit=1 --cpus-per-task 32 torchrun "
        "--nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint gpu-node-07:29400 "
        "--rdzv-id 4242 --shutdown-timeout 600 -m w2vbert.pretrain --x 1 --world-size 16"
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ("launcher=slurm", "runs inside a SLURM allocation"),
        ("launcher=torchrun; num_nodes=2", "needs --rdzv-endpoint HOST:PORT"),
        ("num_nodes=2", "--launcher local runs on this machine only"),
        ("launcher=mpi", "unknown --launcher 'mpi'"),
        ("num_gpus=0", "must be positive integers"),
    ],
)
def test_a_launch_that_cannot_work_is_refused_by_name(settings, message):
    out = _launch(settings)
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_torchrun_through_the_launcher_trains_two_equal_ranks(tmp_path):
    """The real torchrun (gloo, 2 processes) started by launch_training, on the toy job."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{TESTS}", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = (
        f"set -euo pipefail; launcher=torchrun; num_gpus=2; . {ROOT}/utils/launch.sh; "
        f"launch_training toy_training --exp-dir {tmp_path} --num-epochs 1"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torchrun --standalone --nproc-per-node 2 --shutdown-timeout 600 -m toy_training" in out.stderr
    r0, r1 = (torch.load(tmp_path / f"final-rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["num_updates"] > 0 and all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])


def _check_shared(rank: int, dirs: list[str], port: int, errors) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    sys.path.insert(0, str(ROOT))
    from w2vbert.training.ddp import check_shared_directory, cleanup_distributed, setup_distributed

    info = setup_distributed("cpu", timeout_minutes=2)
    try:
        check_shared_directory(Path(dirs[rank]), info)
        errors.put((rank, None))
    except RuntimeError as e:
        errors.put((rank, str(e)))
    finally:
        cleanup_distributed()


@pytest.mark.parametrize("shared", [True, False])
def test_an_exp_dir_that_the_nodes_do_not_share_stops_every_rank(tmp_path, shared):
    # two "nodes" whose view of the exp dir differs: rank 1's path is another directory
    dirs = [str(tmp_path / "exp"), str(tmp_path / ("exp" if shared else "node2-local-exp"))]
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    port = 29000 + os.getpid() % 1000
    procs = [ctx.Process(target=_check_shared, args=(r, dirs, port, errors)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = dict(errors.get(timeout=5) for _ in procs)
    if shared:
        assert results == {0: None, 1: None}
        assert not [p for p in (tmp_path / "exp").iterdir() if p.name.startswith(".shared-check")]
    else:
        assert all(results[r] and "is not shared between the nodes" in results[r] for r in (0, 1))
        assert "rank 1" in results[1] and "this rank" in results[1]
