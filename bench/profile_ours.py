#!/usr/bin/env python
"""torch.profiler table of our pre-training step (same config and flags as step_ours.py).

Prints ``key_averages()`` sorted by self CPU time over ``--steps`` profiled steps after the
warm-up, and emits the top operators (self CPU ms per step, share of the step) as JSON.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _harness import emit, start_step  # noqa: E402
from step_ours import build, ours_parser  # noqa: E402


def main() -> None:
    p = ours_parser()
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--table", default=None, help="also write the full table to this file")
    p.set_defaults(steps=2)
    a = p.parse_args()
    start_step(a)
    from torch.profiler import ProfilerActivity, profile

    cfg, model, step, _, _ = build(a)
    for _ in range(a.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU], with_stack=False) as prof:
        for _ in range(a.steps):
            step()
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=a.top)
    print(table, file=sys.stderr)
    if a.table:
        with open(a.table, "w") as f:
            f.write(events.table(sort_by="self_cpu_time_total", row_limit=200))
    total_us = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: a.top]
    emit(
        {
            "system": f"ours-{10 * cfg.frame_stride}ms",
            "profiled_steps": a.steps,
            "self_cpu_ms_per_step": round(total_us / 1e3 / a.steps, 1),
            "top_ops": [
                {
                    "op": e.key,
                    "calls_per_step": e.count // a.steps,
                    "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / a.steps, 1),
                    "share": round(e.self_cpu_time_total / total_us, 4),
                }
                for e in rows
            ],
        }
    )


if __name__ == "__main__":
    main()
