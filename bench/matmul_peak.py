#!/usr/bin/env python
"""Measured fp32 matmul peak of this machine: ``torch.mm`` of two n x n matrices, GFLOP/s.

The MFU of the pre-training rows is model FLOPs per second over this number, measured in the
same run with the same thread count (2 n^3 FLOPs per product, best of ``--repeats`` timings
of ``--inner`` products each).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import emit, set_threads  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--inner", type=int, default=5, help="products per timing")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args()
    set_threads(a.threads)
    import torch

    dtype = getattr(torch, a.dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n, a.n, generator=g).to(dtype)
    y = torch.randn(a.n, a.n, generator=g).to(dtype)
    out = torch.empty(a.n, a.n, dtype=dtype)
    torch.mm(x, y, out=out)  # warm-up
    rates = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.inner):
            torch.mm(x, y, out=out)
        dt = time.perf_counter() - t0
        rates.append(2 * a.n**3 * a.inner / dt / 1e9)
    rates.sort()
    emit(
        {
            "n": a.n,
            "dtype": a.dtype,
            "gflops_best": round(rates[-1], 1),
            "gflops_median": round(rates[len(rates) // 2], 1),
            "gflops_all": [round(r, 1) for r in rates],
        }
    )


if __name__ == "__main__":
    main()
