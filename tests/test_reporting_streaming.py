"""exp/RESULTS.md's Streaming section, and offline results that chunked decodes do not replace."""

from __future__ import annotations

import json
import os
from pathlib import Path

from w2vbert.reporting.results import write_results


def _result(dir_: Path, name: str, wer: float, chunk: int, mtime: float) -> None:
    out = dir_ / "greedy_search"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "epoch-1-avg-1" + ("" if chunk == -1 else f"-chunk-{chunk}-left-4")
    row = {"set": name, "method": "greedy_search", "suffix": suffix, "wer": wer, "cer": wer / 2,
           "rtf": 0.01, "chunk_size": chunk, "left_context_chunks": -1 if chunk == -1 else 4,
           "step_ms": 40}  # fmt: skip
    path = out / f"results-{name}-{suffix}.json"
    path.write_text(json.dumps(row))
    os.utime(path, (mtime, mtime))


def _check(dir_: Path, chunk: int, fp32_same: int) -> None:
    runs = [{"run": "pytorch streaming greedy_search", "wer": 30.0, "rtf": 0.1, "identical_to_pytorch": 4},
            {"run": "sherpa-onnx online greedy_search fp32", "wer": 30.0, "rtf": 0.05,
             "identical_to_pytorch": fp32_same},
            {"run": "sherpa-onnx online greedy_search int8", "wer": 30.5, "rtf": 0.03,
             "identical_to_pytorch": 3}]  # fmt: skip
    result = {"num_utterances": 4, "chunk_size": chunk, "left_context_chunks": 4, "runs": runs,
              "step_ms": 40}  # fmt: skip
    (dir_ / f"export-check-e-chunk-{chunk}-left-4-streaming.json").write_text(json.dumps(result))


def test_streaming_rows_for_each_chunk_next_to_the_offline_model(tmp_path):
    off, st = tmp_path / "finetune", tmp_path / "finetune-streaming"
    _result(off, "test", 20.0, -1, 100)
    _result(off, "test", 60.0, 16, 200)  # newer, chunked: must not replace the offline row
    _result(off, "test", 80.0, 8, 300)
    for chunk, wer in ((-1, 22.0), (16, 25.0), (8, 27.0)):
        _result(st, "test", wer, chunk, 400)
    _check(st, 8, 4)
    _check(st, 16, 4)
    text = write_results(
        tmp_path, title="t", command="c", dev_sets=[], test_sets=["test"]
    ).read_text()
    assert "| greedy_search | 20.00 / 10.00 (0.010) |" in text  # the full-context result
    section = text.split("## Streaming")[1].split("\n## ")[0]
    rows = [
        line
        for line in section.splitlines()
        if line.startswith("| offline") or line.startswith("| streaming")
    ]
    assert rows == [
        "| offline (stage 5) | full | utterance | - | 20.00 / 10.00 | - | - | - | - |",
        "| offline (stage 5) | 16 steps (640 ms) | 640 | 4 (2560 ms) | 60.00 / 30.00 | - | - | - | - |",
        "| offline (stage 5) | 8 steps (320 ms) | 320 | 4 (1280 ms) | 80.00 / 40.00 | - | - | - | - |",
        "| streaming | full | utterance | - | 22.00 / 11.00 | - | - | - | - |",
        "| streaming | 16 steps (640 ms) | 640 | 4 (2560 ms) | 25.00 / 12.50 | 30.50 | 0.0500 / 0.0300 | 0.1000 | 4/4 |",
        "| streaming | 8 steps (320 ms) | 320 | 4 (1280 ms) | 27.00 / 13.50 | 30.50 | 0.0500 / 0.0300 | 0.1000 | 4/4 |",
    ]


def test_no_streaming_section_without_a_streaming_run(tmp_path):
    _result(tmp_path / "finetune", "test", 20.0, -1, 100)
    text = write_results(
        tmp_path, title="t", command="c", dev_sets=[], test_sets=["test"]
    ).read_text()
    assert "## Streaming" not in text
