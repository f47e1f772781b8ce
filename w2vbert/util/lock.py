"""One writer per directory: a lock file holding the writer's pid, host, command and start time.

A second writer is refused with a message naming the holder. A lock whose process is gone (same
host, pid not alive: a ``kill -9``, a crashed node that came back) is stale and taken over with a
warning. A lock held by this very process (a second Trainer in one Python process) is re-entrant.

The lock file appears complete: its record is written to a temporary file first, which is then
hard-linked to the lock's name (``os.link`` fails if the name exists, so exactly one of several
writers gets it, and no reader ever sees it empty). A stale lock is replaced under an ``flock`` of
``<lock>.guard`` (dropped by the kernel when its holder dies), after checking that it is still the
one found stale: one process takes it over, never one that another has just taken. A refused
writer leaves nothing behind.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from w2vbert.util.atomic import partial_path, pid_alive

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class DirectoryInUseError(RuntimeError):
    """Another live process holds the lock of the directory."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # vanished, or not a lock record (a lock file of an older version cut short)


class DirectoryLock:
    """``with DirectoryLock(exp_dir, "training"):`` -- or :meth:`acquire` / :meth:`release`."""

    def __init__(self, directory: Path | str, what: str, name: str = LOCK_NAME) -> None:
        """``what`` names the writer in messages; ``name``: the lock file's name in ``directory``
        (writers of different files in one directory, e.g. training and export, use their own)."""
        self.directory, self.what = Path(directory), what
        self.path = self.directory / name
        self.guard_path = self.directory / f"{name}.guard"
        self.held = False

    def _record(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": self.what,
            "command": " ".join(sys.argv),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Hold the ``flock`` of the guard file (blocking: it is held only for a few file
        operations at a time)."""
        fd = os.open(self.guard_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    def _publish(self) -> bool:
        """Make the lock file appear with our complete record; False if it exists already."""
        tmp = partial_path(self.path)
        record = json.dumps(self._record())
        tmp.write_text(record)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: create-exclusive, then write
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DirectoryInUseError` naming the live holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the lock changed while we looked at it: look again
            if self._publish():
                self.held = True
                return
            holder = _read(self.path)
            if holder is not None:
                same_host = holder.get("host") == socket.gethostname()
                pid = int(holder.get("pid", -1))
                if same_host and pid == os.getpid():
                    self.held = True  # re-entrant: our own record stays
                    return
                if not same_host or pid_alive(pid):
                    where = "this host" if same_host else f"host {holder.get('host')}"
                    raise DirectoryInUseError(
                        f"{self.directory} is in use: {holder.get('what')} by pid {pid} on {where} "
                        f"since {holder.get('since')} ({holder.get('command')}). One writer per "
                        "directory: wait for it, stop it, or use another directory"
                        + ("." if same_host else f"; if that job is gone, delete {self.path}.")
                    )
            with self._guarded():  # one process at a time replaces a stale (or unreadable) lock
                if _read(self.path) != holder:
                    continue  # someone else replaced or released it meanwhile
                if holder is None:
                    logger.warning(f"Replacing the unreadable lock file {self.path}")
                else:
                    logger.warning(
                        f"Taking over the stale lock {self.path} of {holder.get('what')} by pid "
                        f"{holder.get('pid')} (no longer running) since {holder.get('since')}: "
                        f"{holder.get('command')}"
                    )
                self.path.unlink(missing_ok=True)
                if self._publish():
                    self.held = True
                    return
        raise DirectoryInUseError(f"Could not take the lock {self.path} (it keeps changing).")

    def release(self) -> None:
        """Drop the lock if this process holds it (idempotent)."""
        if not self.held:
            return
        holder = _read(self.path)  # ours while we live: nobody else replaces it
        if holder is not None and int(holder.get("pid", -1)) == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "DirectoryLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
