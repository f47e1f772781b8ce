"""Distributed data parallel set-up: torchrun or self-spawned processes, gloo on CPU, nccl on GPU.

Two ways to run on W processes, both give the same environment (RANK, LOCAL_RANK, WORLD_SIZE):

- ``torchrun --nproc-per-node W -m w2vbert.pretrain ... --world-size W`` (multi-node capable);
- ``python -m w2vbert.pretrain ... --world-size W``: :func:`launch` spawns W local processes (icefall style).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from datetime import timedelta
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from w2vbert.training.signals import STOP_SIGNALS, TrainingInterrupted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _call(fn: Callable[..., Any], args: tuple) -> None:
    """``fn(*args)``; a run stopped by a signal exits with 128 + its number (143, 130)."""
    try:
        fn(*args)
    except TrainingInterrupted as e:
        sys.exit(e.exit_code)


def _spawned_worker(
    local_rank: int, fn: Callable[..., Any], args: tuple, world_size: int, port: int
) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"),
        MASTER_PORT=str(port),
    )
    _call(fn, args)


def _free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free port the OS picks (logged)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logger.warning(
        f"--master-port {preferred} is in use (another DDP job on this node?); using {port}"
    )
    return port


def _spawn(fn: Callable[..., Any], args: tuple, world_size: int, master_port: int) -> None:
    """Spawn the ranks; a stop signal to this parent is passed on to them (they stop with a
    checkpoint), and the parent exits with their exit code. A busy ``master_port`` is replaced
    by a free one (the ranks are all on this node)."""
    master_port = _free_port(master_port)
    context = mp.start_processes(
        _spawned_worker,
        args=(fn, args, world_size, master_port),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )

    def forward(signum: int, frame: Any) -> None:
        for process in context.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        while not context.join():
            pass
    except mp.ProcessExitedException as e:
        if e.exit_code is not None and e.exit_code > 128:
            sys.exit(e.exit_code)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launch(fn: Callable[..., Any], args: tuple, world_size: int, master_port: int = 12354) -> None:
    """Run ``fn(*args)`` on ``world_size`` processes (spawned here unless torchrun already did)."""
    if "WORLD_SIZE" in os.environ:
        env_ws = int(os.environ["WORLD_SIZE"])
        if env_ws != world_size:
            raise ValueError(
                f"--world-size must equal torchrun's WORLD_SIZE ({env_ws}), but is {world_size} instead."
            )
        _call(fn, args)
    elif world_size > 1:
        _spawn(fn, args, world_size, master_port)
    else:
        _call(fn, args)


def setup_distributed(device_kind: str = "cpu", timeout_minutes: float | None = None) -> DistInfo:
    """Join the process group described by the environment (no-op for a single process).

    ``device_kind`` picks the backend: ``"cuda"`` -> nccl (and sets the local CUDA device), else
    gloo. ``timeout_minutes``: of the group's collectives (None: torch's default, 10 min).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    rank, local_rank = (
        int(os.environ["RANK"]),
        int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
    )
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = timedelta(minutes=timeout_minutes) if timeout_minutes else None
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=timeout
        )
    logger.info(f"Joined process group: rank {rank}/{world_size}, backend {backend}")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def check_shared_directory(
    path: Path, info: DistInfo, device: torch.device | str = "cpu"
) -> None:
    """Stop every rank unless all of them see the same ``path`` (a filesystem shared between the
    nodes): rank 0 writes a token file there, the others must find it. Checkpoints keep each
    rank's data position in a side file next to them, so a node-local exp dir would lose them."""
    if not info.distributed:
        return
    path.mkdir(parents=True, exist_ok=True)
    token = [f".shared-check-{os.getpid()}-{time.time_ns()}" if info.is_main else None]
    dist.broadcast_object_list(token, src=0)
    if info.is_main:
        (path / token[0]).touch()
    barrier(info)
    missing = not (path / token[0]).exists()
    lost = any_true(missing, info, device)  # (nccl: a tensor on the rank's GPU)
    barrier(info)
    if info.is_main:
        (path / token[0]).unlink(missing_ok=True)
    if lost:
        raise RuntimeError(
            f"--exp-dir {path} is not shared between the nodes: rank 0's file there is not seen "
            f"by {'this rank' if missing else 'some other rank'} (rank {info.rank}, host "
            f"{socket.gethostname()}). Put the exp dir on a filesystem every node mounts (NFS, "
            "Lustre, ...): checkpoints keep each rank's data position in a side file next to them."
        )


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_true(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """True iff ``flag`` is true on every rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([0 if flag else 1], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item()) == 0


def any_true(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """True iff ``flag`` is true on at least one rank."""
    return not all_true(not flag, info, device)
