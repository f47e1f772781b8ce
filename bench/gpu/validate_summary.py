"""bench/gpu/validate.sh's summary: summary.json and summary.md from its logs.

    python3 bench/gpu/validate_summary.py LOGS_DIR OUT_DIR WORK_DIR WALL_S DEVICE

Reads LOGS_DIR/parts.tsv (part, rc, seconds, last log line), each part's ``RESULT {json}`` /
``BENCH_RESULT {json}`` lines, WORK_DIR/xl/{eager,compile}.json (bench/gpu_xl_step.py) and the
``stage-N-NAME.done`` markers of WORK_DIR/exp-*/log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _results(log: Path) -> list[dict]:
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith(("RESULT ", "BENCH_RESULT "))]


def _xl_line(name: str, r: dict) -> str:
    rows = []
    for c in r["configs"]:
        rows.append(f"batch {c['batch']}: " + (c["error"] if "error" in c else (
            f"{c['audio_sec_per_sec']} audio-s/s, {c['peak_gpu_mem_gb']} GB, MFU {c.get('mfu')} "
            f"(vs measured matmul {c.get('mfu_vs_measured')})")))  # fmt: skip
    return f"XL step ({name}, matmul {r.get('measured_matmul_tflops')} TFLOP/s): " + "; ".join(rows)


def main(logs: Path, out: Path, work: Path, wall: int, dev: str) -> None:
    parts = []
    tsv = logs / "parts.tsv"
    for line in tsv.read_text().splitlines() if tsv.exists() else []:
        name, rc, sec, last = line.split("\t")
        parts.append({"part": name, "rc": rc, "seconds": int(sec), "last_line": last,
                      "results": _results(logs / f"{name}.log")})  # fmt: skip
    xl = {p.stem: json.loads(p.read_text()) for p in sorted(work.glob("xl/*.json"))
          if p.stem in ("eager", "compile")}  # fmt: skip
    stages = sorted(str(p.relative_to(work)) for p in work.glob("exp-*/log/stage-*.done"))
    gpu = "none"
    if dev == "cuda":
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    summary = {"device": dev, "gpu": gpu, "wall_s": wall, "parts": parts, "stages_done": stages,
               "xl_step": xl}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = [f"# bench/gpu/validate.sh on {dev} ({gpu}): {wall} s", "",
          "| part | rc | s | last line of its log |", "|---|---|---|---|"]  # fmt: skip
    md += [f"| {p['part']} | {p['rc']} | {p['seconds']} | {p['last_line'].replace('|', '/')} |"
           for p in parts]  # fmt: skip
    md += ["", "Stages done: " + (", ".join(stages) or "none")]
    md += ["", *(_xl_line(name, r) for name, r in xl.items())]
    md += [f"- {p['part']}: `{json.dumps(r)}`" for p in parts for r in p["results"]]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
