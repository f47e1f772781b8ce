"""Write-then-rename, so that a stage killed half-way leaves nothing that looks finished."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def partial_path(path: Path) -> Path:
    """The temporary name of ``path``: hidden, same directory, same suffixes (``.jsonl.gz``
    stays last, so Lhotse still picks the format from the name)."""
    path = Path(path)
    return path.parent / f".partial-{os.getpid()}.{path.name}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Deletes temporary files of ``path`` left by killed writers (their process is gone);
    returns them. A SIGKILL skips the clean-up of :func:`atomic_output`."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".partial-*.{path.name}"):
        pid = tmp.name[len(".partial-") : -len(path.name) - 1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def naming_error(error: OSError, path: Path, what: str) -> OSError:
    """``error`` again (same errno, so the same OSError subclass) with ``path`` as its file name
    and ``what`` before the reason: a write to a full disk raises ``[Errno 28] No space left on
    device`` naming no file."""
    reason = f"{what}: {error.strerror or error}"
    return OSError(error.errno, reason, str(path)) if error.errno else OSError(f"{reason}: {path}")


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write; renames it to ``path`` if the block succeeds.

    Temporary files of ``path`` left by killed earlier writers are deleted first. On an
    exception the temporary file is removed and ``path`` is left as it was; an OSError
    that names no file (e.g. a full disk) is raised again naming ``path``. (Nest two of these
    only around their own writes, or the inner one names its file for the outer one's error.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None:
            raise
        raise naming_error(e, path, "writing failed") from e
    finally:
        if tmp.exists():
            tmp.unlink()
