"""Issue 25, case 5: the exp-dir lock has no window in which two processes both take it.

The lock file is created with its record complete (temporary file, then ``os.link``), and every
change of it happens under an ``flock``: a process that finds the file never reads it empty and
never removes a live writer's lock.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket

from w2vbert.util.lock import DirectoryInUseError, DirectoryLock

ROUNDS = 250


def _contend(directory: str, barrier, held, index: int, rounds: int) -> None:
    """Each round: wait for the other process, try the lock, record whether it was taken, wait
    until both have tried, release."""
    for r in range(rounds):
        lock = DirectoryLock(directory, f"contender {index}")
        barrier.wait()
        try:
            lock.acquire()
            held[2 * r + index] = 1
        except DirectoryInUseError:
            held[2 * r + index] = 0
        barrier.wait()  # both have tried while the winner still holds it
        lock.release()


def test_two_processes_starting_together_never_both_hold_the_lock(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    held = ctx.Array("b", [-1] * (2 * ROUNDS), lock=False)
    procs = [
        ctx.Process(target=_contend, args=(str(tmp_path), barrier, held, i, ROUNDS))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    winners = [held[2 * r] + held[2 * r + 1] for r in range(ROUNDS)]
    both = sum(w == 2 for w in winners)
    assert both == 0, f"both processes held the lock in {both} of {ROUNDS} rounds"
    assert winners == [1] * ROUNDS  # and one of them always got it
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_is_never_visible_without_its_record(tmp_path, monkeypatch):
    seen = []
    real_link = __import__("os").link

    def spying_link(src, dst, *a, **kw):
        real_link(src, dst, *a, **kw)
        seen.append(json.loads(open(dst).read()))  # the moment it appears

    monkeypatch.setattr("w2vbert.util.lock.os.link", spying_link)
    with DirectoryLock(tmp_path, "training"):
        pass
    assert seen and seen[0]["what"] == "training" and seen[0]["host"] == socket.gethostname()
