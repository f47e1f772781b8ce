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


def test_report_names_the_per_block_compile(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from report import _gpu

    (tmp_path / "gpu").mkdir()
    c = {"batch": 64, "seconds": 15.0, "max_duration": 960.0, "sec_per_step": 0.3,
         "audio_sec_per_sec": 3200.0, "tflops_per_s": 300.0}  # fmt: skip
    run = {"device": "NVIDIA H100", "compile": True, "compile_blocks": True, "configs": [c]}
    (tmp_path / "gpu" / "h100.json").write_text(json.dumps(run))
    out: list[str] = []
    _gpu(tmp_path, out)
    assert "| h100.json | NVIDIA H100 | torch.compile (per block) | 64 x 15 (960) |" in "\n".join(out)


def test_validate_summary_collects_rcs_results_stages_and_xl_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH / "gpu"))
    from validate_summary import main

    logs, work = tmp_path / "work" / "logs", tmp_path / "work"
    (work / "exp-recipe" / "log").mkdir(parents=True)
    (work / "exp-recipe" / "log" / "stage-2-fbank.done").touch()
    (work / "xl").mkdir()
    xl = {"measured_matmul_tflops": 700.0, "configs": [{"batch": 64, "audio_sec_per_sec": 2700.0,
          "peak_gpu_mem_gb": 60.7, "mfu": 0.26, "mfu_vs_measured": 0.33}, {"batch": 96, "error": "out of memory"}]}  # fmt: skip
    (work / "xl" / "eager.json").write_text(json.dumps(xl))
    logs.mkdir()
    (logs / "resume.log").write_text('training...\nRESULT {"resume_bit_identical": true}\nStopped by SIGTERM\n')
    (logs / "parts.tsv").write_text("recipe\t0\t120\tresults: RESULTS.md\nresume\t1\t60\tStopped by SIGTERM\n"
                                    "xl-compile\tskipped\t0\tnot run: 5 s of the 510 s budget left\n")  # fmt: skip
    main(logs, tmp_path, work, 500, "cpu")
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [(p["part"], p["rc"]) for p in s["parts"]] == [("recipe", "0"), ("resume", "1"), ("xl-compile", "skipped")]
    assert s["parts"][1]["results"] == [{"resume_bit_identical": True}]
    assert s["stages_done"] == ["exp-recipe/log/stage-2-fbank.done"]
    md = (tmp_path / "summary.md").read_text()
    assert "| resume | 1 | 60 | Stopped by SIGTERM |" in md
    assert "batch 64: 2700.0 audio-s/s, 60.7 GB, MFU 0.26 (vs measured matmul 0.33); batch 96: out of memory" in md
