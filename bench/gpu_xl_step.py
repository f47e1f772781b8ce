#!/usr/bin/env python
"""GPU benchmark: the ``xl`` (0.6B) w2v-BERT pre-training step in bf16 autocast on one GPU.

    python3 bench/gpu_xl_step.py [--batches 16,32,64,96] [--seconds 15] [--steps 10]

For each batch size (utterances of ``--seconds`` each; 16 x 15 s = ``--max-duration 240``):
forward + backward + fused AdamW, ``--warmup`` untimed steps, then the median of ``--steps``
CUDA-synchronised steps. Reports audio-s/s, peak GPU memory (``max_memory_allocated``) and MFU:
FLOPs of one forward + backward by ``FlopCounterMode`` (matmuls, convolutions, SDPA) per second
over the GPU's dense bf16 peak (H100 SXM / H200: 989 TFLOP/s, NVIDIA's spec sheets; other GPUs:
``--peak-tflops``), and against the best bf16 8192^3 matmul timed on the same GPU. Writes
``bench/gpu/gpu_xl_step[-compile].json`` (and ``$OUT/gpu_xl_step.json`` when ``$OUT`` is set);
``bench/report.py`` tabulates every ``bench/gpu/*.json``. Without CUDA it prints a message and
exits 0. Eager: ~1.5 min for the 4 default batches on an H200; ``--compile`` (the whole model):
~2.5 min per batch; ``--compile-blocks`` (each block, as the training command's ``--compile``).
Needs only torch: imports nothing but ``w2vbert.model`` and ``w2vbert.objectives``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}  # SXM, dense (no sparsity)


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    for key, value in DENSE_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def profile_step(step, torch, path: Path, steps: int = 3) -> None:
    """Write the top kernels by device time over ``steps`` steps to ``path`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    path.write_text(prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=70))


def run_config(batch: int, a, torch, device) -> dict:
    from _harness import count_flops
    from w2vbert.model.config import get_w2vbert_config
    from w2vbert.model.w2vbert import create_w2vbert_model
    from w2vbert.objectives.w2vbert_loss import w2vbert_loss

    cfg = get_w2vbert_config(a.preset)
    if a.frame_stride is not None:
        cfg = dataclasses.replace(cfg, frame_stride=a.frame_stride)
    torch.manual_seed(0)
    model = create_w2vbert_model(cfg).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    frames = int(round(a.seconds * 100))
    x = torch.randn(batch, frames, cfg.num_mel_bins, device=device)
    x_lens = torch.full((batch,), frames, dtype=torch.int64, device=device)
    step_model = torch.compile(model) if a.compile else model
    if a.compile_blocks:  # what the training command's --compile does
        from w2vbert.model.conformer import ConformerEncoder
        from w2vbert.training.runner import compile_blocks

        compile_blocks([m for m in model.modules() if isinstance(m, ConformerEncoder)])
    loss_kwargs = cfg.loss_kwargs()

    def forward_backward():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = step_model(x, x_lens)
            loss = w2vbert_loss(out, **loss_kwargs)
        loss.aggregate.backward()
        return loss

    def step() -> float:
        loss = forward_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.aggregate.detach())

    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(a.warmup):
        step()
    sync()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        last_loss = step()  # float() synchronises
        sync()
        times.append(time.perf_counter() - t0)
    peak_mem = torch.cuda.max_memory_allocated(device) if cuda else None
    if a.profile:
        out_dir = Path(os.environ.get("OUT") or HERE)
        profile_step(step, torch, out_dir / f"gpu_xl_step_profile_b{batch}.txt")
    flops = count_flops(forward_backward)
    opt.zero_grad(set_to_none=True)
    sec = statistics.median(times)
    del model, opt, x
    if cuda:
        torch.cuda.empty_cache()
    return {
        "batch": batch,
        "seconds": a.seconds,
        "max_duration": batch * a.seconds,
        "params": params,
        "frame_stride": cfg.frame_stride,
        "sec_per_step": round(sec, 4),
        "step_times": [round(t, 4) for t in times],
        "audio_sec_per_sec": round(batch * a.seconds / sec, 1),
        "peak_gpu_mem_gb": None if peak_mem is None else round(peak_mem / 2**30, 2),
        "flops_per_step": flops,
        "tflops_per_s": round(flops / sec / 1e12, 1),
        "final_loss": round(last_loss, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="xl")
    p.add_argument("--batches", default="16,32,64,96", help="batch sizes to time, comma-separated")
    p.add_argument("--seconds", type=float, default=15.0, help="audio seconds per utterance")
    p.add_argument("--frame-stride", type=int, default=None, choices=[2, 4])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    p.add_argument(
        "--compile-blocks",
        action="store_true",
        help="torch.compile each conformer block (dynamic shapes), as the training command's "
        "--compile does: one block's compile serves all of them, a much faster start",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default: bench/gpu/gpu_xl_step[-compile].json, read by bench/report.py)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also write the top kernels of 3 profiled steps per batch ($OUT or bench/)",
    )
    p.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run the code path on the CPU (use with --preset tiny; for testing)",
    )
    a = p.parse_args()
    if a.out is None:
        compiled = a.compile or a.compile_blocks
        a.out = HERE / "gpu" / ("gpu_xl_step-compile.json" if compiled else "gpu_xl_step.json")

    import torch
    from _harness import matmul_gflops

    if a.cpu_dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print(
            f"gpu_xl_step: no CUDA device (torch {torch.__version__}); this benchmark needs a "
            "GPU (H100/H200). Nothing measured."
        )
        return 0
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if a.compile:  # the feature encoder's `.item()` padding check would break the graph
        torch._dynamo.config.capture_scalar_outputs = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    peak = peak_tflops(name, a.peak_tflops)
    result = {
        "device": name,
        "torch": torch.__version__,
        "preset": a.preset,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "peak_tflops": peak,
        "measured_matmul_tflops": matmul_gflops(
            512 if a.cpu_dry_run else 8192, device=device.type, dtype="bfloat16"
        )
        / 1000,
        "compile": a.compile or a.compile_blocks,
        "compile_blocks": a.compile_blocks,
        "configs": [],
    }
    t_start = time.perf_counter()
    for batch in (int(b) for b in a.batches.split(",") if b.strip()):
        try:
            r = run_config(batch, a, torch, device)
        except torch.cuda.OutOfMemoryError as e:
            r = {"batch": batch, "error": f"out of memory: {str(e).splitlines()[0]}"}
            torch.cuda.empty_cache()
        if "error" not in r and peak:
            r["mfu"] = round(r["tflops_per_s"] / peak, 4)
        if "error" not in r:
            r["mfu_vs_measured"] = round(r["tflops_per_s"] / result["measured_matmul_tflops"], 4)
        result["configs"].append(r)
        print(json.dumps(r), flush=True)
    ok = [r for r in result["configs"] if "error" not in r]
    if ok:  # headline: the fastest batch that fits (audio-s/s)
        best = max(ok, key=lambda r: r["audio_sec_per_sec"])
        result.update(
            {
                k: best.get(k)
                for k in (
                    "batch",
                    "seconds",
                    "sec_per_step",
                    "audio_sec_per_sec",
                    "peak_gpu_mem_gb",
                    "mfu",
                    "mfu_vs_measured",
                )
            }
        )
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result, indent=1) + "\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_xl_step.json").write_text(text)
    print(
        f"gpu_xl_step: {name}: "
        + "; ".join(
            f"batch {r['batch']}: "
            + (
                r["error"]
                if "error" in r
                else f"{r['audio_sec_per_sec']:.0f} audio-s/s, {r['peak_gpu_mem_gb']} GB, "
                f"MFU {r.get('mfu')} (vs measured matmul {r.get('mfu_vs_measured')})"
            )
            for r in result["configs"]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
