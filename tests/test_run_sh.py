"""The shell front door: option parsing of run.sh and the stage runner it uses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_help_lists_every_stage() -> None:
    out = _run(["./run.sh", "--help"])
    assert out.returncode == 0
    for name in ["corpus", "manifests", "fbank", "bpe", "pretrain", "finetune", "decode", "export"]:
        assert name in out.stdout


def test_unknown_option_is_rejected_with_its_name() -> None:
    out = _run(["./run.sh", "--no-such-option", "1"])
    assert out.returncode != 0
    assert "unknown option '--no-such-option'" in out.stderr


def test_stage_after_stop_stage_is_rejected() -> None:
    out = _run(["./run.sh", "--stage", "3", "--stop-stage", "1"])
    assert out.returncode != 0
    assert "greater than --stop-stage" in out.stderr


def test_unknown_corpus_is_rejected() -> None:
    out = _run(["./run.sh", "--corpus", "timit", "--dry-run", "true"])
    assert out.returncode != 0
    assert "unknown --corpus 'timit'" in out.stderr


def test_dry_run_selects_exactly_the_requested_stages(tmp_path: Path) -> None:
    out = _run(
        ["./run.sh", "--dry-run", "true", "--stage", "2", "--stop-stage", "3",
         "--exp-dir", str(tmp_path / "exp")]
    )
    assert out.returncode == 0, out.stderr
    assert "stage 2 (fbank): would run" in out.stdout
    assert "stage 3 (bpe): would run" in out.stdout
    for other in ["stage 1 (", "stage 4 ("]:
        assert other not in out.stdout


STAGE_DRIVER = r"""
set -euo pipefail
stage=$1; stop_stage=$2; force=$3; dry_run=false; log_dir=$4
. "{root}/utils/stage_lib.sh"
run_stage 1 one bash -c 'echo output-of-one; echo ran >> "$0/ran-1"' "$log_dir"
run_stage 2 two bash -c 'echo output-of-two; echo ran >> "$0/ran-2"; exit ${{FAIL_TWO:-0}}' "$log_dir"
run_stage 3 three bash -c 'echo ran >> "$0/ran-3"' "$log_dir"
"""


@pytest.fixture()
def driver(tmp_path: Path) -> Path:
    script = tmp_path / "driver.sh"
    script.write_text(STAGE_DRIVER.format(root=ROOT))
    return script


def _count(log_dir: Path, n: int) -> int:
    f = log_dir / f"ran-{n}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_stages_run_in_range_and_log_their_output(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    out = _run(["bash", str(driver), "1", "2", "false", str(log_dir)])
    assert out.returncode == 0, out.stderr
    assert [_count(log_dir, n) for n in (1, 2, 3)] == [1, 1, 0]
    assert "output-of-one" in (log_dir / "stage-1-one.log").read_text()
    assert "output-of-two" in (log_dir / "stage-2-two.log").read_text()
    assert (log_dir / "stage-1-one.done").exists()


def test_finished_stage_is_skipped_and_force_reruns_it(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    _run(["bash", str(driver), "1", "1", "false", str(log_dir)])
    out = _run(["bash", str(driver), "1", "1", "false", str(log_dir)])
    assert "already done, skipping" in out.stdout
    assert _count(log_dir, 1) == 1
    _run(["bash", str(driver), "1", "1", "true", str(log_dir)])
    assert _count(log_dir, 1) == 2


def test_failing_stage_stops_the_run_and_names_its_log(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    out = _run(["bash", str(driver), "1", "3", "false", str(log_dir)], env={"FAIL_TWO": "3"})
    assert out.returncode != 0
    assert "stage 2 (two) failed" in out.stdout
    assert str(log_dir / "stage-2-two.log") in out.stdout
    assert _count(log_dir, 3) == 0
    assert not (log_dir / "stage-2-two.done").exists()
