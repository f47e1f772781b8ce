"""One writer per directory: a lock file holding the writer's pid, host, command and start time.

A second writer is refused with a message naming the holder. A lock whose process is gone (same
host, pid not alive: a ``kill -9``, a crashed node that came back) is stale and taken over with a
warning. A lock held by this very process (a second Trainer in one Python process) is re-entrant.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from w2vbert.util.atomic import pid_alive

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class DirectoryInUseError(RuntimeError):
    """Another live process holds the lock of the directory."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # vanished, or cut short by a kill between create and write


class DirectoryLock:
    """``with DirectoryLock(exp_dir, "training"):`` -- or :meth:`acquire` / :meth:`release`."""

    def __init__(self, directory: Path | str, what: str, name: str = LOCK_NAME) -> None:
        """``what`` names the writer in messages; ``name``: the lock file's name in ``directory``
        (writers of different files in one directory, e.g. training and export, use their own)."""
        self.directory, self.what = Path(directory), what
        self.path = self.directory / name
        self.held = False

    def _record(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": self.what,
            "command": " ".join(sys.argv),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DirectoryInUseError` naming the live holder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed by someone else between our tries: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:
                    logger.warning(f"Removing the unreadable lock file {self.path}")
                    self.path.unlink(missing_ok=True)
                    continue
                same_host = holder.get("host") == socket.gethostname()
                pid = int(holder.get("pid", -1))
                if same_host and pid == os.getpid():
                    self._write_over()
                    return
                if same_host and not pid_alive(pid):
                    logger.warning(
                        f"Taking over the stale lock {self.path} of {holder.get('what')} by pid {pid} "
                        f"(no longer running) since {holder.get('since')}: {holder.get('command')}"
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                where = "this host" if same_host else f"host {holder.get('host')}"
                raise DirectoryInUseError(
                    f"{self.directory} is in use: {holder.get('what')} by pid {pid} on {where} since "
                    f"{holder.get('since')} ({holder.get('command')}). One writer per directory: wait "
                    f"for it, stop it, or use another directory"
                    + ("." if same_host else f"; if that job is gone, delete {self.path}.")
                )
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
            self.held = True
            return
        raise DirectoryInUseError(f"Could not take the lock {self.path} (it keeps changing).")

    def _write_over(self) -> None:
        self.path.write_text(json.dumps(self._record()))
        self.held = True

    def release(self) -> None:
        """Drop the lock if this process holds it (idempotent)."""
        if not self.held:
            return
        holder = _read(self.path)
        if holder is not None and int(holder.get("pid", -1)) == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "DirectoryLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
