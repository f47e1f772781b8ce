#!/usr/bin/env python3
"""Lists every line of a git repository's tracked files that holds a merge-conflict marker
(``<<<<<<< ``, ``>>>>>>> ``, and between them a bare ``=======`` or diff3's ``||||||| ``), as ``path:line: text``.

    python3 utils/check_conflict_markers.py [REPO]     # exit 1 when any is found

The test suite runs it on this repository (tests/test_repo_hygiene.py), so an unresolved merge
never lands: a report or JSON with markers breaks for the next person who reads it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_OPEN = re.compile(rb"^<{7}( |$)")
_CLOSE = re.compile(rb"^>{7}( |$)")
_MIDDLE = re.compile(rb"^={7}$")
_BASE = re.compile(rb"^\|{7}( |$)")  # diff3 / zdiff3: the common ancestor's side


def conflict_markers(repo: Path) -> list[str]:
    """``path:line: text`` of each conflict marker in the tracked files of ``repo``."""
    files = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], check=True, capture_output=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = repo / name.decode()
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # deleted in the work tree, a submodule
            continue
        if b"\0" in data[:8000]:  # binary
            continue
        inside = False
        for i, line in enumerate(data.splitlines(), 1):
            line = line.rstrip(b"\r")
            hit = bool(
                _OPEN.match(line)
                or _CLOSE.match(line)
                or (inside and (_MIDDLE.match(line) or _BASE.match(line)))
            )
            if _OPEN.match(line):
                inside = True
            elif _CLOSE.match(line):
                inside = False
            if hit:
                found.append(f"{name.decode()}:{i}: {line.decode(errors='replace')}")
    return found


def main() -> int:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    found = conflict_markers(repo)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} merge-conflict marker(s) in tracked files: resolve them", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
