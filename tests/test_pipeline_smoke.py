"""Every stage of run.sh on a tiny synthesised corpus with a tiny model (about a minute)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_sh_runs_every_stage_on_the_tiny_corpus(tmp_path: Path) -> None:
    exp, data, download = tmp_path / "exp", tmp_path / "data", tmp_path / "download"
    cmd = ["./run.sh", "--corpus", "tiny", "--exp-dir", str(exp), "--data-dir", str(data),
           "--download-dir", str(download)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    # stage outputs
    assert (download / "tiny" / "test-mini").is_dir()
    assert (data / "manifests" / "tiny_recordings_train-mini.jsonl.gz").is_file()
    assert (data / "fbank" / "tiny_cuts_pretrain.jsonl.gz").is_file()
    assert (data / "lang_bpe_64" / "bpe.model").is_file()
    assert (exp / "pretrain" / "epoch-1.pt").is_file()
    assert (exp / "finetune" / "epoch-2.pt").is_file()
    assert list((exp / "pretrain" / "tensorboard").iterdir())
    for method in ["greedy_search", "modified_beam_search"]:
        assert list((exp / "finetune" / method).glob("wer-summary-test-mini-*.txt")), method
    for part in ["encoder", "decoder", "joiner"]:
        assert list((exp / "finetune").glob(f"{part}-*.onnx")), part
    for n, name in enumerate(["corpus", "manifests", "fbank", "bpe", "pretrain", "finetune",
                              "decode", "export"]):
        assert (exp / "log" / f"stage-{n}-{name}.done").is_file(), name
        assert (exp / "log" / f"stage-{n}-{name}.log").stat().st_size > 0, name

    results = (exp / "RESULTS.md").read_text()
    wers = re.findall(r"\| greedy_search \| (\d+\.\d+) / (\d+\.\d+) \(", results)  # WER / CER
    assert wers, results
    assert (exp / "plots" / "pretrain.png").is_file()

    # a second run skips every finished stage
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done, skipping") == 8
