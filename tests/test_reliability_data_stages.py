"""Issue 20 for the data stages: one writer per output directory, and a clean stop on SIGTERM
(no worker process left writing)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import make_librispeech_part
from test_reliability_killed_stages import PAUSE_AT_CALL, REPO, TIMEOUT, _env


def _bpe(tmp_path: Path, lang_dir: Path) -> subprocess.CompletedProcess:
    text = tmp_path / "text.txt"
    text.write_text("".join(f"A SENTENCE NUMBER {i} OF THE TEXT\n" for i in range(50)))
    return subprocess.run(
        [sys.executable, str(REPO / "local" / "train_bpe.py"), "--lang-dir", str(lang_dir),
         "--vocab-size", "32", "--text", str(text)],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def _lock(directory: Path, pid: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    record = {"pid": pid, "host": socket.gethostname(), "what": "stage 3 (train_bpe)",
              "command": "local/train_bpe.py ...", "since": "2026-12-01T10:00:00"}  # fmt: skip
    path.write_text(json.dumps(record))
    return path


def test_a_second_writer_of_a_data_directory_is_refused_in_one_line(tmp_path):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lang = tmp_path / "lang"
        _lock(lang, holder.pid)
        out = _bpe(tmp_path, lang)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr
        assert f"{lang} is in use: stage 3 (train_bpe) by pid {holder.pid} on this host" in out.stderr
        assert not (lang / "bpe.model").exists()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_data_stage_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lang = tmp_path / "lang"
    _lock(lang, dead.pid)
    out = _bpe(tmp_path, lang)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"Taking over the stale lock {lang / '.lock'}" in out.stderr
    assert (lang / "bpe.model").is_file() and not (lang / ".lock").exists()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: it writes nothing
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.slow
def test_sigterm_stops_compute_fbank_and_its_workers(tmp_path):
    for part in ("dev-x", "train-x"):
        make_librispeech_part(tmp_path / "corpus", part)
    manifests, out = tmp_path / "manifests", tmp_path / "fbank"
    subprocess.run(
        [sys.executable, str(REPO / "local" / "prepare_manifests.py"), "--corpus-dir",
         str(tmp_path / "corpus"), "--prefix", "toy", "--output-dir", str(manifests)],
        env=_env(), check=True, capture_output=True, timeout=TIMEOUT,
    )  # fmt: skip
    marker = tmp_path / "paused"
    target = "w2vbert.prep.compute_features:compute_fbank_part"
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AT_CALL, str(REPO / "local" / "compute_fbank.py"), target,
         "1", str(marker), "--manifest-dir", str(manifests), "--output-dir", str(out),
         "--prefix", "toy", "--nj", "2"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():  # the first part is done; the worker pool is up
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "the --nj 2 pool should have worker processes"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "Stopped by SIGTERM; finished outputs are kept, a re-run redoes the rest" in err
    time.sleep(0.5)
    assert [w for w in workers if _alive(w)] == []
    assert not (out / ".lock").exists()
    assert len(list(out.glob("toy_cuts_*.jsonl.gz"))) == 1  # the finished part is kept
