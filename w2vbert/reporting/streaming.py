"""The "Streaming" section of `exp/RESULTS.md`: the streaming model (`exp/finetune-streaming`) at
each decoded chunk size, next to the offline model of stage 5 at full context and in chunks.

A row's algorithmic latency is its chunk: neither front end looks ahead (docs in
:mod:`w2vbert.export.onnx_streaming`); the offline model's full-context row waits for the whole
utterance. Real-time factors are stage 7's, on 1 thread, audio fed in 0.1 s pieces.
"""

from __future__ import annotations

from pathlib import Path

from w2vbert.reporting.collect import DecodeResult, decode_results, streaming_checks

METHOD = "greedy_search"
"""Streaming decoding is greedy (sherpa-onnx's online recogniser and PyTorch's stream)."""


def streaming_section(exp_dir: Path, dev_sets: list[str], test_sets: list[str]) -> list[str]:
    """Markdown lines of the section, or ``[]`` when `exp_dir/finetune-streaming` has no results."""
    stream_dir = exp_dir / "finetune-streaming"
    streaming = [r for r in decode_results(stream_dir) if r.method == METHOD]
    if not streaming:
        return []
    offline = [r for r in decode_results(exp_dir / "finetune") if r.method == METHOD]
    checks = streaming_checks(stream_dir)
    sets = dev_sets + test_sets
    lines = ["## Streaming (`--streaming true`: stages 5-7 into finetune-streaming)", "",
             "Greedy search, WER % / CER %. Latency: the chunk (the front ends look no frame "
             "ahead); left context in chunks. RTF: stage 7 on the first test set, 1 thread, audio "
             "fed in 0.1 s pieces (sherpa-onnx online fp32 / int8; PyTorch's streaming encoder "
             "with caches).", "",
             "| model | chunk | latency (ms) | left context | " + " | ".join(sets)
             + " | int8 WER | RTF sherpa-onnx fp32 / int8 | RTF PyTorch | sherpa-onnx = PyTorch |",
             "|---|---|---|---|" + "---|" * len(sets) + "---|---|---|---|"]  # fmt: skip
    for label, results in (("offline (stage 5)", offline), ("streaming", streaming)):
        chunks = sorted({r.chunk_size for r in results}, key=lambda c: (c != -1, -c))
        for chunk in chunks:
            by_set = {r.set_name: r for r in results if r.chunk_size == chunk}
            lines.append(
                _row(
                    label, chunk, by_set, sets, checks.get(chunk) if label == "streaming" else None
                )
            )
    lines += ["", "Offline rows at a chunk size: the full-context model run with the chunk mask "
              "(what a model trained without chunks gives when it must stream).", ""]  # fmt: skip
    return lines


def _row(
    label: str, chunk: int, by_set: dict[str, DecodeResult], sets: list[str], check: dict | None
) -> str:
    any_result = next(iter(by_set.values()))
    step_ms = any_result.step_ms
    if chunk == -1:
        chunk_cell, latency, left = "full", "utterance", "-"
    else:
        chunk_cell = f"{chunk} steps ({chunk * step_ms} ms)"
        latency = str(chunk * step_ms)
        lc = any_result.left_context_chunks
        left = "all" if lc == -1 else f"{lc} ({lc * chunk * step_ms} ms)"
    cells = [f"{by_set[s].wer:.2f} / {by_set[s].cer:.2f}" if s in by_set and by_set[s].cer is not None
             else (f"{by_set[s].wer:.2f}" if s in by_set else "-") for s in sets]  # fmt: skip
    int8_wer = rtf_sherpa = rtf_torch = same = "-"
    if check is not None:
        runs = {r["run"]: r for r in check["runs"]}
        torch_run = next((r for n, r in runs.items() if n.startswith("pytorch")), None)
        fp32 = next((r for n, r in runs.items() if n.endswith("fp32")), None)
        int8 = next((r for n, r in runs.items() if n.endswith("int8")), None)
        if int8 is not None and int8["wer"] is not None:
            int8_wer = f"{int8['wer']:.2f}"
        if fp32 is not None:
            rtf_sherpa = f"{fp32['rtf']:.4f}" + (f" / {int8['rtf']:.4f}" if int8 else "")
            same = f"{fp32['identical_to_pytorch']}/{check['num_utterances']}"
        if torch_run is not None:
            rtf_torch = f"{torch_run['rtf']:.4f}"
    return (
        f"| {label} | {chunk_cell} | {latency} | {left} | "
        + " | ".join(cells)
        + f" | {int8_wer} | {rtf_sherpa} | {rtf_torch} | {same} |"
    )
