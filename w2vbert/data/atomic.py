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


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write; renames it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
