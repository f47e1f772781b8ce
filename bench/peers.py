"""Peer virtual environments for the benchmarks (fairseq2, HF), kept out of the project's env.

Each peer gets its own venv under ``$W2VBERT_BENCH_CACHE`` (default
``~/.cache/w2vbert/bench-venvs/<name>``), created on first use with the pinned requirements below
and reused afterwards (a stamp file holds the spec it was built from and the install time).

    python bench/peers.py [fairseq2|hf ...]      # create the venvs now (prints the install time)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# name -> pip requirements. fairseq2 0.8.1 pins torch 2.9.1 (a CUDA build from PyPI, ~7 GB);
# transformers 5.x runs on the torch 2.13.0 CPU wheel the machine has on disk.
PEER_SPECS: dict[str, list[str]] = {
    "fairseq2": ["fairseq2==0.8.1"],
    "hf": ["torch==2.13.0", "transformers>=5,<6"],
}
STAMP = ".bench-peer-done"


def cache_dir() -> Path:
    """The folder that holds one venv per peer."""
    default = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2vbert" / "bench-venvs"
    )
    return Path(os.environ.get("W2VBERT_BENCH_CACHE", default))


def venv_python(name: str) -> Path:
    return cache_dir() / name / "bin" / "python"


def install_info(name: str) -> dict | None:
    """``{"spec": [...], "install_s": float, "versions": {...}}`` of a finished venv, else None."""
    stamp = cache_dir() / name / STAMP
    if not stamp.is_file():
        return None
    info = json.loads(stamp.read_text())
    return info if info.get("spec") == PEER_SPECS[name] else None


def _base_python() -> str:
    """A Python 3.10+ interpreter outside any venv (venv's ``sys._base_executable``)."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def ensure_peer(name: str, log=print) -> dict:
    """Creates the venv of ``name`` unless it is up to date; returns its install info."""
    if name not in PEER_SPECS:
        raise ValueError(f"`name` must be one of {sorted(PEER_SPECS)}, but is {name!r} instead.")
    info = install_info(name)
    if info is not None:
        return info
    root = cache_dir() / name
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    log(f"[peers] creating {root} with {' '.join(PEER_SPECS[name])} (fairseq2: ~2 min, ~7 GB)")
    t0 = time.perf_counter()
    subprocess.run([_base_python(), "-m", "venv", str(root)], check=True)
    py = str(root / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + PEER_SPECS[name], check=True)
    install_s = time.perf_counter() - t0
    probe = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps({{p: m.version(p) for p in {_probe_pkgs(name)!r}}}))"
    )
    versions = json.loads(
        subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True).stdout
    )
    info = {
        "spec": PEER_SPECS[name],
        "install_s": round(install_s, 1),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (root / STAMP).write_text(json.dumps(info))
    log(f"[peers] {name} ready in {install_s:.0f} s: {versions}")
    return info


def _probe_pkgs(name: str) -> list[str]:
    return {"fairseq2": ["fairseq2", "fairseq2n", "torch"], "hf": ["transformers", "torch"]}[name]


if __name__ == "__main__":
    for peer in sys.argv[1:] or sorted(PEER_SPECS):
        print(json.dumps({peer: ensure_peer(peer)}))
