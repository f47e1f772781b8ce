"""Helpers shared by every benchmark script (stdlib + torch only: peer venvs import it too).

A benchmark script measures one configuration in its own process and ends by printing one
line ``BENCH_RESULT {json}`` that :mod:`bench.run_all` parses.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from typing import Callable

RESULT_TAG = "BENCH_RESULT "


def set_threads(num_threads: int) -> None:
    """Pins torch's intra-op threads (and one inter-op thread) before any work."""
    import torch

    torch.set_num_threads(num_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (only allowed once, before parallel work)
        pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Current resident set size of this process, MiB (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_steps(step: Callable[[], object], *, warmup: int, steps: int) -> list[float]:
    """Runs ``step`` ``warmup + steps`` times; returns the wall times (s) of the last ``steps``."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        print(
            f"  step {i + 1}/{warmup + steps}: {dt:.3f} s{' (warm-up)' if i < warmup else ''}",
            file=sys.stderr,
            flush=True,
        )
    return times


def _register_cpu_sdpa_flops() -> None:
    """Teaches FlopCounterMode the CPU flash-attention kernels (it only knows the CUDA ones).

    Same dense count as torch's for the CUDA kernels: forward 4*N*H*S*S'*D (QK^T and AV),
    backward 2.5x that (it recomputes the scores); masked-out scores are computed all the same.
    """
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry and fwd.default not in fc.flop_registry:

        @fc.register_flop_formula(fwd)
        def _fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(query, key, value)

    if bwd is not None and bwd not in fc.flop_registry and bwd.default not in fc.flop_registry:

        @fc.register_flop_formula(bwd)
        def _bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out, query, key, value)


def _fix_grouped_conv_backward() -> None:
    """Replaces FlopCounterMode's ``convolution_backward`` formula, which ignores ``groups``.

    torch's formula counts a depthwise convolution's backward ``groups`` times too high (for the
    conformer's kernel-31 depthwise conv over 256 channels: 16 GFLOP instead of 0.06 per step
    of the benchmark). Here each requested gradient (input, weight) costs one forward:
    ``2 * N * prod(out spatial) * C_out * C_in/groups * prod(kernel)``.
    """
    import torch
    from torch.utils import flop_counter as fc

    def conv_backward_flop(
        grad_out_shape,
        x_shape,
        w_shape,
        _bias,
        _stride,
        _padding,
        _dilation,
        transposed,
        _output_padding,
        _groups,
        output_mask,
        out_shape=None,
        **kwargs,
    ) -> int:
        forward = fc.conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
        return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))

    fc.flop_registry[torch.ops.aten.convolution_backward] = fc.shape_wrapper(conv_backward_flop)


def matmul_gflops(
    n: int = 2048, repeats: int = 5, inner: int = 3, device: str = "cpu", dtype: str = "float32"
) -> float:
    """Best GFLOP/s of ``inner`` n x n ``torch.mm`` products, over ``repeats`` timings.

    Each step benchmark measures it (fp32, CPU) in its own process just before its timed steps;
    the report's matmul peak is the best of these and of ``matmul_peak.py`` (robust to load).
    ``gpu_xl_step.py`` measures its bf16 CUDA peak with it too (synchronised timings).
    """
    import torch

    dev, dt = torch.device(device), getattr(torch, dtype)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(n, n, generator=g).to(dev, dt) for _ in range(2))
    out = torch.empty(n, n, device=dev, dtype=dt)
    torch.mm(x, y, out=out)
    sync()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(x, y, out=out)
        sync()
        best = max(best, 2 * n**3 * inner / (time.perf_counter() - t0) / 1e9)
    return round(best, 1)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions, attention) by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa_flops()
    _fix_grouped_conv_backward()
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def step_summary(times: list[float], audio_s: float) -> dict:
    """Median step time and throughput of a list of step times."""
    sec = statistics.median(times)
    return {
        "sec_per_step": round(sec, 4),
        "audio_sec_per_sec": round(audio_s / sec, 3),
        "step_times": [round(t, 4) for t in times],
    }


def start_step(a, *, seed_numpy: bool = False) -> float:
    """Start of a pre-training step benchmark (args of ``_step_args.step_parser``): pins the
    threads, seeds torch (and numpy) with ``--seed``; returns the RSS (MiB) before the model."""
    set_threads(a.threads)
    import torch

    torch.manual_seed(a.seed)
    if seed_numpy:
        import numpy as np

        np.random.seed(a.seed)
    return current_rss_mb()


def measure_step(a, model, step: Callable[[], object], forward_backward: Callable[[], object]):
    """The measured part of a pre-training step benchmark (args of ``_step_args.step_parser``).

    This process's fp32 matmul peak, ``--warmup`` + ``--steps`` timed ``step()`` calls, then
    (unless ``--no-flops``) the FLOPs of one ``forward_backward()``, whose gradients are cleared.
    Returns :func:`step_summary`'s fields plus ``params``, ``flops_per_step`` and
    ``matmul_gflops``, for :func:`emit_step`.
    """
    params = sum(p.numel() for p in model.parameters())
    peak_here = matmul_gflops()
    times = time_steps(step, warmup=a.warmup, steps=a.steps)
    result = step_summary(times, a.batch * a.seconds)
    flops = None
    if not a.no_flops:
        flops = count_flops(forward_backward)
        model.zero_grad(set_to_none=True)
    result.update(params=params, flops_per_step=flops, matmul_gflops=peak_here)
    return result


def emit_step(
    measured: dict, *, system: str, rss_start: float, final_loss: float, **fields
) -> None:
    """Prints a step benchmark's result: :func:`measure_step`'s ``measured`` with ``system`` and
    the system's own ``fields`` (frame rate, encoder steps...), peak RSS, start RSS and loss.

    Field order: step summary, system, params, ``fields``, FLOPs, matmul peak, RSS, final loss.
    """
    result = dict(measured)
    tail = {k: result.pop(k) for k in ("flops_per_step", "matmul_gflops")}
    result.update(system=system, params=result.pop("params"), **fields, **tail)
    result.update(
        peak_rss_mb=round(peak_rss_mb(), 1),
        rss_start_mb=round(rss_start, 1),
        final_loss=round(final_loss, 3),
    )
    emit(result)


def emit(result: dict) -> None:
    """Prints the result line the orchestrator reads."""
    import torch

    result.setdefault("torch", torch.__version__)
    result.setdefault("num_threads", torch.get_num_threads())
    print(RESULT_TAG + json.dumps(result), flush=True)
