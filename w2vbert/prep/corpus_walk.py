"""Walking a corpus part directory by directory, and reading its files in parallel, in memory
that does not grow with the number of files.

:func:`walk_directories` visits the directories in the order of ``Path.rglob`` (each directory,
then its sub-directories depth first, entries in ``os.scandir`` order, symbolic links to
directories not followed), so manifests written in walk order list their items as Lhotse's
recipes, which iterate ``part_dir.rglob(pattern)``, do. Unlike ``rglob`` it keeps no set of the
paths it has yielded, and a directory it may not read raises PermissionError naming it instead of
being skipped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def walk_directories(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(directory, names of its entries)`` for ``root`` and every directory below it."""
    root = Path(root)
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):  # removed while walking: as rglob, skip it
        return
    yield root, [e.name for e in entries]
    for entry in entries:
        try:
            is_dir = entry.is_dir() and not entry.is_symlink()
        except OSError:
            is_dir = False
        if is_dir:
            yield from walk_directories(root / entry.name)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], num_jobs: int = 1, window: int = 64
) -> Iterator[R]:
    """``map(fn, items)`` on ``num_jobs`` threads, results in input order, at most ``window``
    (at least ``num_jobs``) items in flight at a time."""
    if num_jobs <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(num_jobs) as ex:
        pending: deque = deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= max(window, num_jobs):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
