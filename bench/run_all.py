#!/usr/bin/env python
"""Runs every benchmark of issue 8, each measured configuration in its own process, and writes
``bench/results.json`` (raw numbers) and ``bench/BENCHMARKS.md`` (tables, ratios, goals).

    bench/run.sh [--repeats 2] [--steps 5] [--only pretrain,rnnt,fbank,decode,profile] [--note TEXT]

Rows: pre-training step (ours at 40 ms and 20 ms vs fairseq2 0.8.1 vs HF transformers,
alternating, ``--repeats`` rounds), pruned vs full RNN-T loss, kaldifeat vs Lhotse fbank,
decoding RTF (PyTorch vs sherpa-onnx), and a torch.profiler table of our step. The peers run
in their own venvs (``bench/peers.py``), created on first use (fairseq2 ~2-3 min, ~7 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import RESULT_TAG  # noqa: E402
from peers import ensure_peer, venv_python  # noqa: E402
from report import write_report  # noqa: E402

ROWS = ("pretrain", "rnnt", "fbank", "decode", "profile")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_one(
    name: str,
    python: str,
    script: str,
    args: list[str],
    *,
    threads: int,
    timeout: float,
    log_dir: Path,
    project: bool = True,
) -> dict:
    """Runs ``python bench/<script> args`` in a fresh process; returns its BENCH_RESULT dict
    (or ``{"error": ...}``). Its stderr goes to ``log_dir/<name>.log``."""
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1"
    )
    env.pop("PYTHONPATH", None)
    if project:
        env["PYTHONPATH"] = str(REPO)
    cmd = [python, str(HERE / script), *args]
    log_path = log_dir / f"{name}.log"
    t0 = time.perf_counter()
    try:
        with open(log_path, "w") as err:
            err.write("$ " + shlex.join(cmd) + "\n")
            err.flush()
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                timeout=timeout,
                cwd=REPO,
            )
    except subprocess.TimeoutExpired:
        log(f"{name}: timed out after {timeout:.0f} s (log: {log_path})")
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = log_path.read_text().strip().splitlines()[-3:]
        log(f"{name}: failed (exit {proc.returncode}; log: {log_path}): {' | '.join(tail)}")
        return {"error": f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"}
    result = json.loads(lines[-1][len(RESULT_TAG) :])
    result["wall_s"] = round(wall, 1)
    return result


def machine_info(threads: int) -> dict:
    import torch

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def pool(runs: list[dict]) -> dict:
    """Summary of one system's repeated runs: median of all step times, max peak RSS."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "not run"}
    times = [t for r in ok for t in r["step_times"]]
    first = ok[0]
    sec = statistics.median(times)
    audio = first["audio_sec_per_sec"] * first["sec_per_step"]  # audio seconds per batch
    out = {
        k: first.get(k)
        for k in (
            "system",
            "params",
            "frame_rate_hz",
            "encoder_steps",
            "flops_per_step",
            "torch",
            "feature_encoder_channels",
            "masked_fraction",
        )
    }
    out.update(
        sec_per_step=round(sec, 4),
        audio_sec_per_sec=round(audio / sec, 3),
        peak_rss_mb=max(r["peak_rss_mb"] for r in ok),
        num_steps=len(times),
        step_min=round(min(times), 4),
        step_max=round(max(times), 4),
    )
    return out


def bench_pretrain(a, pythons: dict[str, str], log_dir: Path) -> dict:
    common = ["--threads", str(a.threads), "--warmup", str(a.warmup), "--steps", str(a.steps)]
    systems = [
        ("ours-40ms", "project", "step_ours.py", ["--frame-stride", "4"]),
        ("fairseq2", "fairseq2", "step_fairseq2.py", []),
        ("ours-20ms", "project", "step_ours.py", ["--frame-stride", "2"]),
        ("hf", "hf", "step_hf.py", ["--steps", str(a.hf_steps)]),
    ]
    wanted = [x.strip() for x in a.systems.split(",") if x.strip()]
    systems = [sys_ for sys_ in systems if sys_[0] in wanted]
    runs: dict[str, list[dict]] = {name: [] for name, *_ in systems}
    for rep in range(a.repeats):
        for name, env_name, script, extra in systems:
            if name == "hf" and rep >= a.hf_repeats:
                continue
            if env_name not in pythons:
                runs[name].append(
                    {"error": f"no {env_name} venv ({pythons.get('why_' + env_name)})"}
                )
                continue
            flops = [] if rep == 0 else ["--no-flops"]  # count FLOPs once per system
            log(f"pre-training step: {name} (round {rep + 1}/{a.repeats})")
            r = run_one(
                f"pretrain_{name}_r{rep + 1}",
                pythons[env_name],
                script,
                common + extra + flops,
                threads=a.threads,
                timeout=a.timeout,
                log_dir=log_dir,
                project=env_name == "project",
            )
            if "error" not in r:
                log(
                    f"  {r['sec_per_step']:.3f} s/step, {r['audio_sec_per_sec']:.2f} audio-s/s, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB"
                )
            runs[name].append(r)
    summary = {name: pool(rs) for name, rs in runs.items()}
    for name, s in summary.items():  # FLOPs were counted in round 1 only
        if "error" not in s and s.get("flops_per_step") is None:
            s["flops_per_step"] = next(
                (r.get("flops_per_step") for r in runs[name] if r.get("flops_per_step")), None
            )
    return {"runs": runs, "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    p.add_argument(
        "--threads", type=int, default=2, help="threads of the pre-training/loss/fbank rows"
    )
    p.add_argument(
        "--repeats", type=int, default=2, help="alternating rounds of the pre-training row"
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps per process (median)")
    p.add_argument("--hf-steps", type=int, default=5, help="timed steps of HF (~15 s each)")
    p.add_argument("--hf-repeats", type=int, default=1, help="rounds that include HF (slow)")
    p.add_argument(
        "--systems",
        default="ours-40ms,fairseq2,ours-20ms,hf",
        help="systems of the pre-training row, in the order they alternate",
    )
    p.add_argument("--timeout", type=float, default=1200, help="seconds per process")
    p.add_argument("--out-dir", type=Path, default=HERE)
    p.add_argument("--note", default="", help="a line for BENCHMARKS.md (e.g. machine under load)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite BENCHMARKS.md from the results.json in --out-dir",
    )
    a = p.parse_args()
    if a.report_only:
        write_report(
            json.loads((a.out_dir / "results.json").read_text()), a.out_dir / "BENCHMARKS.md"
        )
        return
    rows = [r.strip() for r in a.only.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        p.error(f"--only must name rows among {ROWS}, but names {unknown}")
    log_dir = a.out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    command = "bench/run.sh " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "bench/run.sh"
    results: dict = {
        "command": command.strip(),
        "note": a.note,
        "machine": machine_info(a.threads),
        "settings": {k: v for k, v in vars(a).items() if k not in ("out_dir", "note")},
        "rows": rows,
    }

    def run_project(
        name: str,
        script: str,
        args: list[str],
        threads: int = a.threads,
        timeout: float = a.timeout,
    ) -> dict:
        """``run_one`` of a script in this project's venv, its log in ``log_dir``."""
        return run_one(
            name, sys.executable, script, args, threads=threads, timeout=timeout, log_dir=log_dir
        )

    def matmul_peak(name: str) -> dict:
        return run_project(name, "matmul_peak.py", ["--threads", str(a.threads)], timeout=300)

    pythons = {"project": sys.executable}
    if "pretrain" in rows:
        results["peers"] = {}
        wanted = a.systems.split(",")
        for peer in [pe for pe in ("fairseq2", "hf") if pe in wanted]:
            try:
                info = ensure_peer(peer, log=log)
                pythons[peer] = str(venv_python(peer))
                results["peers"][peer] = info
            except Exception as e:  # noqa: BLE001 - reported in the table
                pythons["why_" + peer] = str(e)
                results["peers"][peer] = {"error": str(e)}
                log(f"peer {peer} unavailable: {e}")
        log("matmul peak (fp32, torch.mm 2048^2)")
        results["matmul"] = matmul_peak("matmul_peak")
        results["pretrain"] = bench_pretrain(a, pythons, log_dir)
        log("matmul peak again (after the pre-training row)")
        results["matmul_after"] = matmul_peak("matmul_peak_after")

    if "rnnt" in rows:
        results["rnnt"] = {}
        for mode in ("pruned", "full"):
            log(f"RNN-T loss: {mode}")
            results["rnnt"][mode] = run_project(
                f"rnnt_{mode}",
                "rnnt_loss_bench.py",
                [mode, "--threads", str(a.threads), "--steps", str(a.steps)],
            )

    if "fbank" in rows:
        results["fbank"] = {}
        for threads in (1, 2):
            for extractor in ("kaldifeat", "lhotse"):
                log(f"fbank: {extractor}, {threads} thread(s)")
                results["fbank"][f"{extractor}_{threads}"] = run_project(
                    f"fbank_{extractor}_{threads}",
                    "fbank_bench.py",
                    [extractor, "--threads", str(threads), "--steps", str(max(a.steps, 20))],
                    threads=threads,
                )

    if "decode" in rows:
        results["decode"] = {}
        for backend in ("pytorch", "sherpa-onnx"):
            log(f"decoding RTF: {backend}, 1 thread")
            results["decode"][backend] = run_project(
                f"decode_{backend}", "decode_rtf.py", [backend, "--threads", "1"], threads=1
            )

    if "profile" in rows:
        results["profile"] = {}
        for stride in (4, 2):
            name = f"ours-{10 * stride}ms"
            log(f"profile: {name}")
            results["profile"][name] = run_project(
                f"profile_{name}",
                "profile_ours.py",
                [
                    "--frame-stride",
                    str(stride),
                    "--threads",
                    str(a.threads),
                    "--steps",
                    "2",
                    "--no-flops",
                    "--table",
                    str(log_dir / f"profile_{name}.txt"),
                ],
            )

    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, a.out_dir / "BENCHMARKS.md")
    log(
        f"wrote {a.out_dir / 'results.json'} and {a.out_dir / 'BENCHMARKS.md'} "
        f"in {results['total_wall_s']:.0f} s"
    )
    failed = failed_measurements(results)
    if failed:
        log(f"{len(failed)} measurement(s) failed (see their logs in {log_dir}): {', '.join(failed)}")
        sys.exit(1)


def failed_measurements(results: dict) -> list[str]:
    """Names of the measurements that ended in an error (``row/system[/round]``); the report is
    written either way, the exit status says whether every measurement succeeded."""
    failed = []
    for row in ROWS + ("matmul", "matmul_after"):
        value = results.get(row)
        if not isinstance(value, dict):
            continue
        if "error" in value:
            failed.append(row)
        elif row == "pretrain":
            for name, runs in value.get("runs", {}).items():
                failed += [f"pretrain/{name}/{i + 1}" for i, r in enumerate(runs) if "error" in r]
        else:
            failed += [f"{row}/{k}" for k, r in value.items() if isinstance(r, dict) and "error" in r]
    return failed


if __name__ == "__main__":
    main()
