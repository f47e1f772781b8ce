"""./run.sh --streaming true: stages 5-7 build the streaming recogniser (dry run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["./run.sh", "--dry-run", "true", "--streaming", "true", "--stage", "5",
            "--stop-stage", "7", "--exp-dir", str(tmp_path / "exp"), *extra]  # fmt: skip
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))


def test_streaming_run_fine_tunes_with_chunks_decodes_each_chunk_size_and_exports_online(tmp_path):
    out = _dry_run(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "stage 5 (finetune-streaming): would run" in out.stdout
    assert "stage 5 (finetune):" not in out.stdout and "stage 7 (export):" not in out.stdout
    finetune = next(line for line in lines if "python -m w2vbert.finetune" in line)
    assert f"--exp-dir {tmp_path}/exp/finetune-streaming" in finetune
    assert finetune.endswith(
        r"--chunk-sizes 320ms\,640ms\,-1 --left-context-chunks 4 --conv-causal --input-norm global"
    )
    decodes = [line for line in lines if "python -m w2vbert.decode" in line]
    assert [d.split("--decode-chunk-size ")[1] for d in decodes] == [
        f"{c} --left-context-chunks 4" for c in ("320ms", "640ms", "-1")
    ]
    assert "stage 7 (export-streaming): would run" in out.stdout
    exports = [line for line in lines if "python -m w2vbert.export_onnx" in line]
    assert [e.split("--streaming ")[1] for e in exports] == [
        f"--decode-chunk-size {c} --left-context-chunks 4" for c in ("320ms", "640ms")
    ]
    assert all(f"--exp-dir {tmp_path}/exp/finetune-streaming" in e for e in exports)


def test_an_offline_model_of_stage_5_is_also_decoded_in_chunks(tmp_path):
    """The full-context-only model, decoded at each positive chunk size: the issue's reference."""
    (tmp_path / "exp" / "finetune").mkdir(parents=True)
    (tmp_path / "exp" / "finetune" / "epoch-20.pt").write_bytes(b"")
    out = _dry_run(tmp_path, "--stop-stage", "6")
    assert out.returncode == 0, out.stderr
    offline = [line for line in out.stdout.splitlines()
               if "python -m w2vbert.decode" in line and f"{tmp_path}/exp/finetune " in line]  # fmt: skip
    assert [d.split("--decode-chunk-size ")[1] for d in offline] == [
        f"{c} --left-context-chunks 4" for c in ("320ms", "640ms")
    ]


def test_streaming_chunk_sizes_without_a_positive_one_are_refused_at_export(tmp_path):
    out = _dry_run(tmp_path, "--streaming-chunk-sizes", "-1", "--stage", "7")
    assert out.returncode != 0
    assert "--streaming-chunk-sizes '-1' lists no positive chunk size" in out.stderr
