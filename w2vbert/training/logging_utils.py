"""Logging set-up for entry points, run provenance (config, git sha, versions), metric sinks.

Only entry points call :func:`setup_logging`; library modules use ``logging.getLogger(__name__)``.
"""

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

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] ({rank}/{world_size}) %(message)s"
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


def setup_logging(
    log_dir: Path | str | None,
    prefix: str = "log-train",
    rank: int = 0,
    world_size: int = 1,
    level: int = logging.INFO,
) -> Path | None:
    """Log to stderr and to ``<log_dir>/<prefix>-<time>[-<rank>]``; returns the log file path."""
    fmt = logging.Formatter(LOG_FORMAT.format(rank=rank, world_size=world_size))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_w2vbert", False):  # ours from an earlier call; others are left alone
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    console._w2vbert = True  # type: ignore[attr-defined]
    root.addHandler(console)
    if log_dir is None:
        return None
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    path = log_dir / (f"{prefix}-{stamp}" + (f"-{rank}" if world_size > 1 else ""))
    fh = logging.FileHandler(path)
    fh.setFormatter(fmt)
    fh._w2vbert = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    return path


def git_sha(repo: Path | str | None = None) -> str:
    """``<sha>[-dirty]`` of the repository holding this package, or ``"unknown"``."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
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


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_run_info(exp_dir: Path | str, config: dict[str, Any], name: str = "config.json") -> Path:
    """Write the resolved config, argv, git sha and package versions to ``<exp_dir>/<name>``.

    If the file exists (a resumed run), keys whose value changed are logged as a warning.
    """
    path = Path(exp_dir) / name
    if path.is_file():
        try:
            old, new = _flatten(json.loads(path.read_text()).get("config", {})), _flatten(config)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
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
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path


class MetricsTracker:
    """Frame-weighted sums of per-batch metrics; ``averages()`` gives their weighted means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.frames = 0.0
        self.batches = 0

    def add(self, metrics: dict[str, float], num_frames: float) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * num_frames
        self.frames += num_frames
        self.batches += 1

    def averages(self) -> dict[str, float]:
        denom = self.frames if self.frames > 0 else 1.0
        return {k: v / denom for k, v in self.sums.items()}

    @staticmethod
    def format(values: dict[str, float]) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


class MetricSinks:
    """TensorBoard scalars and a JSON-lines file (``<exp_dir>/<jsonl_name>``) for plots; rank 0 only."""

    def __init__(
        self, exp_dir: Path, tensorboard: bool, enabled: bool, jsonl_name: str = "metrics.jsonl"
    ) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = exp_dir / jsonl_name
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(exp_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop JSONL rows with ``step`` > ``step`` (rows written after the checkpoint we resume from)."""
        if not self.enabled or not self.jsonl.is_file():
            return
        keep = []
        for line in self.jsonl.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        tmp = self.jsonl.with_name("." + self.jsonl.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in keep))
        tmp.replace(self.jsonl)

    def write(self, split: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{split}/{k}", v, step)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
