"""The repository itself: no committed merge-conflict markers, and bench/BENCHMARKS.md renders
from the committed benchmark inputs (issue 30: a merge committed markers into both)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO / "utils"))
sys.path.insert(0, str(BENCH))

from check_conflict_markers import conflict_markers  # noqa: E402


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_tracked_file_holds_a_merge_conflict_marker() -> None:
    found = conflict_markers(REPO)
    assert not found, "merge-conflict markers committed:\n" + "\n".join(found)


def test_conflict_marker_check_finds_a_planted_marker(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "ok.md").write_text("Title\n=======\n\ntext\n")  # a setext heading is not a marker
    (tmp_path / "bad.json").write_text(
        '{\n<<<<<<< HEAD\n "a": 1\n||||||| base\n "a": 0\n=======\n "a": 2\n>>>>>>> branch\n}\n'
    )
    (tmp_path / "untracked.txt").write_text("<<<<<<< HEAD\n")
    _git(tmp_path, "add", "ok.md", "bad.json")
    assert conflict_markers(tmp_path) == [
        "bad.json:2: <<<<<<< HEAD",
        "bad.json:4: ||||||| base",
        "bad.json:6: =======",
        "bad.json:8: >>>>>>> branch",
    ]
    cli = subprocess.run(
        [sys.executable, str(REPO / "utils" / "check_conflict_markers.py"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "bad.json:2" in cli.stdout


def _bench_copy(tmp_path: Path) -> Path:
    """The committed report inputs (results.json, data_prep/, gpu/) in a scratch bench dir."""
    out = tmp_path / "bench"
    out.mkdir()
    shutil.copy(BENCH / "results.json", out / "results.json")
    for sub in ("data_prep", "gpu"):
        if (BENCH / sub).is_dir():
            shutil.copytree(BENCH / sub, out / sub)
    return out


def test_committed_report_renders_from_the_committed_inputs(tmp_path: Path) -> None:
    from report import write_report

    out = _bench_copy(tmp_path)
    for path in [out / "results.json", *out.glob("*/*.json")]:
        json.loads(path.read_text())  # every input parses (a conflict marker would not)
    write_report(json.loads((out / "results.json").read_text()), out / "BENCHMARKS.md")
    rendered = (out / "BENCHMARKS.md").read_text()
    assert "Not rendered" not in rendered
    assert rendered == (BENCH / "BENCHMARKS.md").read_text(), (
        "bench/BENCHMARKS.md is not what bench/report.py renders from the committed inputs: "
        "run `python3 bench/run_all.py --report-only` and commit the result"
    )


def test_report_is_written_when_an_optional_input_is_unreadable(tmp_path: Path) -> None:
    from report import write_report

    out = _bench_copy(tmp_path)
    broken = out / "data_prep" / "memory.json"
    broken.write_text('{\n<<<<<<< HEAD\n "date": 1\n}\n')
    results = json.loads((out / "results.json").read_text())
    del results["rnnt"]["pruned"]["sec_per_step"]  # a malformed section of results.json
    write_report(results, out / "BENCHMARKS.md")
    text = (out / "BENCHMARKS.md").read_text()
    assert f"`{broken.as_posix()}` is unreadable (JSONDecodeError" in text
    assert "**Not rendered**: section `rnnt` failed on its input (KeyError: 'sec_per_step'" in text
    for heading in ("## 1. Pre-training step", "## 3.", "## 5. GPU", "## Profile of our step"):
        assert heading in text
    assert not (out / "BENCHMARKS.md.tmp").exists()


def test_failed_measurements_name_each_failed_run() -> None:
    from run_all import failed_measurements

    results = {
        "pretrain": {"runs": {"ours-40ms": [{"sec_per_step": 1.0}], "hf": [{"error": "x"}]}},
        "rnnt": {"pruned": {"sec_per_step": 1.0}, "full": {"error": "timed out"}},
        "matmul": {"error": "exit 1"},
        "peers": {"fairseq2": {"error": "no network"}},  # reported via its pretrain runs
    }
    assert failed_measurements(results) == ["pretrain/hf/1", "rnnt/full", "matmul"]
    assert failed_measurements({"rnnt": {"pruned": {"sec_per_step": 1.0}}}) == []
