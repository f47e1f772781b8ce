"""bench/gpu_xl_step.py on the CPU (its dry-run path) and its section of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(tmp_path / "out"))
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu_xl_step.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )


def test_dry_run_writes_every_number(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _run(
        tmp_path,
        *("--cpu-dry-run", "--preset", "tiny", "--batches", "2,3", "--seconds", "1"),
        *("--warmup", "1", "--steps", "2", "--profile", "--out", str(out)),
    )
    r = json.loads(out.read_text())
    assert [c["batch"] for c in r["configs"]] == [2, 3]
    assert r["measured_matmul_tflops"] > 0
    for c in r["configs"]:
        assert c["flops_per_step"] > 0 and c["sec_per_step"] > 0
        assert len(c["step_times"]) == 2
        assert c["mfu_vs_measured"] == pytest.approx(
            c["tflops_per_s"] / r["measured_matmul_tflops"], abs=1e-3
        )
    best = max(r["configs"], key=lambda c: c["audio_sec_per_sec"])
    assert r["batch"] == best["batch"]  # the headline is the fastest batch
    assert (tmp_path / "out" / "gpu_xl_step.json").is_file()
    assert "aten::mm" in (tmp_path / "out" / "gpu_xl_step_profile_b2.txt").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path) -> None:
    p = _run(tmp_path, "--out", str(tmp_path / "r.json"))
    assert "no CUDA device" in p.stdout
    assert not (tmp_path / "r.json").exists()


def test_report_tabulates_gpu_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from report import _gpu

    out: list[str] = []
    _gpu(tmp_path, out)
    assert any("Not measured yet" in line for line in out)

    (tmp_path / "gpu").mkdir()
    run = {
        "device": "NVIDIA H200",
        "compile": True,
        "measured_matmul_tflops": 800.0,
        "configs": [
            {
                "batch": 64,
                "seconds": 15.0,
                "max_duration": 960.0,
                "sec_per_step": 0.25,
                "audio_sec_per_sec": 3840.0,
                "peak_gpu_mem_gb": 50.0,
                "tflops_per_s": 350.0,
                "mfu": 350 / 989,
                "mfu_vs_measured": 350 / 800,
            },
            {"batch": 128, "error": "out of memory: CUDA out of memory."},
        ],
    }
    (tmp_path / "gpu" / "h200.json").write_text(json.dumps(run))
    out = []
    _gpu(tmp_path, out)
    text = "\n".join(out)
    assert "| h200.json | NVIDIA H200 | torch.compile | 64 x 15 (960) | 0.250 | 3840 |" in text
    assert "out of memory" in text
    assert "| MFU >= 40% (dense bf16 spec peak) | 35.4% (batch 64) | **missed** |" in text
    assert "| MFU >= 40% (bf16 matmul peak measured on the same GPU) | 43.8% | met |" in text
