"""The one atomic writer: write under a temporary name, then rename, so that a process killed
half-way leaves nothing that looks finished. Manifests, features' cuts files, BPE models and
checkpoints all go through it.

The temporary name of ``dir/name`` is ``dir/.partial-<pid>.name`` (hidden, same directory, same
suffixes: ``.jsonl.gz`` stays last, so Lhotse still picks the format from the name). A temporary
file whose writer process is gone (a SIGKILL skips every clean-up) is stale and deleted by the next
writer of the same file; one whose writer is still alive is left alone.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

_PREFIX = ".partial-"

# Test hook: called with the final path after the temporary file is complete, before the rename.
after_temp_write_hook: Callable[[Path], None] | None = None


def partial_path(path: Path | str) -> Path:
    """The temporary name of ``path`` for this process (see the module docstring)."""
    path = Path(path)
    return path.parent / f"{_PREFIX}{os.getpid()}.{path.name}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _writer_pid(tmp_name: str, final_name: str | None = None) -> int | None:
    """The pid in ``.partial-<pid>.<final_name>`` (any final name when None), else None."""
    if not tmp_name.startswith(_PREFIX):
        return None
    pid, dot, rest = tmp_name[len(_PREFIX) :].partition(".")
    if not dot or not pid.isdigit() or (final_name is not None and rest != final_name):
        return None
    return int(pid)


def _is_stale(tmp: Path, final_name: str | None = None, own: bool = False) -> bool:
    pid = _writer_pid(tmp.name, final_name)
    if pid is None:
        return False
    if pid == os.getpid():
        return own  # ours: stale only where the caller knows it is writing nothing yet
    return not pid_alive(pid)


def remove_stale_partials(path: Path | str) -> list[Path]:
    """Deletes temporary files of ``path`` left by killed writers; returns them."""
    path = Path(path)
    return remove_stale_partials_in(path.parent, final_name=path.name)


def remove_stale_partials_in(
    directory: Path | str, include_own: bool = False, final_name: str | None = None
) -> list[Path]:
    """Deletes the stale temporary files directly in ``directory`` (only those of ``final_name``
    when given); returns them.

    ``include_own``: files carrying this process's pid count as stale too: a restarted job in a
    container often gets the pid of the killed one, and a writer that has not started writing
    knows that none of them is its own.
    """
    removed = []
    for tmp in Path(directory).glob(f"{_PREFIX}*.{final_name}" if final_name else f"{_PREFIX}*"):
        if tmp.is_file() and _is_stale(tmp, final_name, own=include_own):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_error(error: BaseException, path: Path, what: str = "") -> OSError:
    """An OSError for a failed write of ``path``: names the file, the free space there and that
    the previous file is kept, with the reason (same errno, so the same OSError subclass).

    A full disk raises ``[Errno 28] No space left on device`` naming no file, and makes
    ``torch.save`` raise a RuntimeError such as "unexpected pos 704 vs 598"; both become this.
    ``what`` (e.g. "Part train-x: storing features") replaces the leading "Writing <path>".
    """
    path = Path(path)
    try:
        free = f"{shutil.disk_usage(path.parent if path.parent.exists() else '.').free / 2**20:.1f} MiB free there"
    except OSError:  # pragma: no cover - the directory vanished
        free = "free space unknown"
    errno = getattr(error, "errno", None)
    reason = getattr(error, "strerror", None) or str(error)
    if what:  # the caller says what failed and what it did about it
        message = f"{what} failed ({free}): {reason}"
    else:
        message = f"Writing {path} failed ({free}; the previous file, if any, is kept): {reason}"
    return OSError(errno, message, str(path)) if errno else OSError(f"{message}: {path}")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


@contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path to write; renames it to ``path`` if the block succeeds.

    Stale temporary files of ``path`` are deleted first. The file is fsynced before the rename and
    the directory after it, so a crash at any moment leaves either the old or the new complete file.
    On an exception the temporary file is removed and ``path`` is left as it was; an OSError that
    names no file (e.g. a full disk) is raised as the OSError of :func:`write_error`. (Nest two of
    these only around their own writes.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        if after_temp_write_hook is not None:
            after_temp_write_hook(path)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None and Path(e.filename) != tmp:
            raise
        raise write_error(e, path) from e
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_output`."""
    import torch

    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # a full disk: "unexpected pos 704 vs 598", no file named
                raise write_error(e, path) from e


@contextmanager
def atomic_text(path: Path | str) -> Iterator[Any]:
    """A text file (UTF-8) to write, that becomes ``path`` when the block succeeds."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f


def atomic_write_text(path: Path | str, text: str) -> None:
    """``Path(path).write_text(text)`` through :func:`atomic_output` (UTF-8)."""
    with atomic_text(path) as f:
        f.write(text)


def remove_stale_partial_dirs(path: Path | str) -> list[Path]:
    """Deletes the temporary directories of ``path`` (``.partial-<pid>.<name>``) whose writer
    is gone; returns them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f"{_PREFIX}*.{path.name}"):
        if tmp.is_dir() and _is_stale(tmp, path.name):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


@contextmanager
def scratch_directory(path: Path | str) -> Iterator[Path]:
    """An empty directory ``.partial-<pid>.<name>`` beside ``path`` for temporary files, deleted
    at the end of the block (stale ones of killed writers first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partial_dirs(path)
    tmp = partial_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Yields an empty temporary directory that becomes ``path`` when the block succeeds (an
    existing ``path`` is moved aside, replaced, then deleted); on an exception it is deleted and
    ``path`` left as it was. Stale temporary directories of ``path`` are deleted first."""
    path = Path(path)
    old_name = path.with_name(path.name + ".old")
    remove_stale_partial_dirs(old_name)
    with scratch_directory(path) as tmp:
        yield tmp
        old = None
        if path.exists():
            old = partial_path(old_name)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
