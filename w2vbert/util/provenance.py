"""Run provenance: git sha, package versions, the resolved config of a run, peak memory."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from w2vbert.util.atomic import atomic_output

logger = logging.getLogger(__name__)

_PACKAGES = (
    "torch",
    "lhotse",
    "numpy",
    "kaldifeat",
    "fast_rnnt",
    "k2",
    "sentencepiece",
    "kaldialign",
)


def git_sha(repo: Path | str | None = None, short: bool = False) -> str:
    """``<sha>[-dirty]`` of the repository holding this package (or ``repo``), or ``"unknown"``;
    ``short``: the abbreviated sha."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def flatten_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_run_info(exp_dir: Path | str, config: dict[str, Any], name: str = "config.json") -> Path:
    """Write the resolved config, argv, git sha and package versions to ``<exp_dir>/<name>``.

    If the file exists (a resumed run), the keys whose value changed are logged as a warning, and
    ``history`` keeps what each earlier run of this exp dir was started with (time, argv, git sha,
    and the values it had for the keys that changed), so the file never hides a change.
    """
    path = Path(exp_dir) / name
    history: list[dict[str, Any]] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            old, new = flatten_dict(previous.get("config", {})), flatten_dict(config)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            history = list(previous.get("history", []))
            history.append(
                {
                    "time": previous.get("time"),
                    "argv": previous.get("argv"),
                    "git_sha": previous.get("git_sha"),
                    "changed": {k: old.get(k) for k in changed},
                }
            )
            if changed:
                logger.warning(f"Config differs from the previous run's {path} in: {changed}")
        except (OSError, json.JSONDecodeError):
            pass
    info = {
        "config": config,
        "argv": sys.argv,
        "git_sha": git_sha(),
        "versions": package_versions(),
        "host": platform.node(),
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "history": history,
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return path


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
