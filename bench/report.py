"""Writes ``BENCHMARKS.md`` from the results dict of :mod:`bench.run_all` (stdlib only)."""

from __future__ import annotations

import json
from pathlib import Path

GOAL_SPEED_40MS = 2.0  # x fairseq2 audio-s/s at the paper's 40 ms frames
GOAL_SPEED_20MS = 1.2  # x fairseq2 at matched 20 ms frames
GOAL_MEMORY = 0.7  # x fairseq2 peak RSS, at most
GOAL_MFU = 0.55  # of the measured fp32 matmul peak
GOAL_RNNT_MEMORY = 5.0  # full / pruned peak memory, at least


def _f(x, fmt: str = "{:.2f}", missing: str = "–") -> str:
    return missing if x is None else fmt.format(x)


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def matmul_peak(results: dict) -> float | None:
    """Best fp32 GFLOP/s of the matmul runs before and after the pre-training row and of the
    checks inside each step process (the best is the least disturbed by other load)."""
    rates = [
        r["gflops_best"]
        for r in (results.get("matmul"), results.get("matmul_after"))
        if r and "gflops_best" in r
    ]
    for runs in results.get("pretrain", {}).get("runs", {}).values():
        rates += [r["matmul_gflops"] for r in runs if r.get("matmul_gflops")]
    return max(rates) if rates else None


def _pretrain(results: dict, out: list[str]) -> None:
    pre = results.get("pretrain")
    if not pre:
        return
    s = pre["summary"]
    peak = matmul_peak(results)
    ref = s.get("fairseq2", {})
    ref_ok = "error" not in ref
    out += [
        "## 1. Pre-training step (forward + backward + AdamW)",
        "",
        "Batch 4 x 10 s, d256, 8 conformer layers (4 contrastive + 4 MLM; HF: 8 contrastive, "
        "no MLM head), 4 heads, FFN 1024, conv kernel 31, 1 x 1024 codes, 100 distractors, "
        f"{results['machine']['threads']} threads, random weights and input. Median of all "
        f"timed steps of {results['settings']['repeats']} alternating round(s) "
        f"({results['settings']['steps']} steps each after {results['settings']['warmup']} "
        "warm-up), each system in its own process per round.",
        "",
        "| system | encoder frames | params | s/step (min-max) | audio-s/s | x fairseq2 | "
        "peak RSS (MB) | x fairseq2 | GFLOP/step | GFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in s.items():
        if "error" in r:
            out.append(f"| {name} | failed: {r['error']} |||||||||||")
            continue
        speed = r["audio_sec_per_sec"] / ref["audio_sec_per_sec"] if ref_ok else None
        mem = r["peak_rss_mb"] / ref["peak_rss_mb"] if ref_ok else None
        flops = r.get("flops_per_step")
        rate = flops / r["sec_per_step"] / 1e9 if flops else None
        mfu = rate / peak if rate and peak else None
        out.append(
            f"| {name} | {_f(r['frame_rate_hz'], '{:g}')} Hz | {r['params'] / 1e6:.2f} M | "
            f"{r['sec_per_step']:.3f} ({r['step_min']:.2f}-{r['step_max']:.2f}) | "
            f"{r['audio_sec_per_sec']:.2f} | {_f(speed)} | {r['peak_rss_mb']:.0f} | {_f(mem)} | "
            f"{_f(flops and flops / 1e9, '{:.1f}')} | {_f(rate, '{:.1f}')} | {_f(mfu, '{:.0%}')} |"
        )
    out += [
        "",
        f"Matmul peak (fp32 `torch.mm` 2048 x 2048, same threads; best of the runs before "
        f"and after this row and of a check inside each step process): "
        f"**{_f(peak, '{:.1f}')} GFLOP/s**. MFU = GFLOP/s of the step / this peak.",
        "",
    ]
    o40, o20 = s.get("ours-40ms", {}), s.get("ours-20ms", {})

    def ratio(o: dict, key: str) -> float | None:
        return o[key] / ref[key] if ref_ok and "error" not in o else None

    def best_ratio(o: dict) -> float | None:  # throughput ratio from the fastest steps
        if not ref_ok or "error" in o:
            return None
        return ref["step_min"] / o["step_min"]

    def mfu(o: dict, key: str = "sec_per_step") -> float | None:
        if "error" in o or not o.get("flops_per_step") or not peak:
            return None
        return o["flops_per_step"] / o[key] / 1e9 / peak

    checks = [
        (
            f"throughput >= {GOAL_SPEED_40MS} x fairseq2 at 40 ms",
            ratio(o40, "audio_sec_per_sec"),
            best_ratio(o40),
            lambda v: v >= GOAL_SPEED_40MS,
            "{:.2f} x",
        ),
        (
            f"throughput >= {GOAL_SPEED_20MS} x fairseq2 at 20 ms",
            ratio(o20, "audio_sec_per_sec"),
            best_ratio(o20),
            lambda v: v >= GOAL_SPEED_20MS,
            "{:.2f} x",
        ),
        (
            f"peak memory <= {GOAL_MEMORY} x fairseq2 (40 ms)",
            ratio(o40, "peak_rss_mb"),
            None,
            lambda v: v <= GOAL_MEMORY,
            "{:.2f} x",
        ),
        (
            f"peak memory <= {GOAL_MEMORY} x fairseq2 (20 ms)",
            ratio(o20, "peak_rss_mb"),
            None,
            lambda v: v <= GOAL_MEMORY,
            "{:.2f} x",
        ),
        (
            f"MFU >= {GOAL_MFU:.0%} of the matmul peak (40 ms)",
            mfu(o40),
            mfu(o40, "step_min"),
            lambda v: v >= GOAL_MFU,
            "{:.0%}",
        ),
        (
            f"MFU >= {GOAL_MFU:.0%} of the matmul peak (20 ms)",
            mfu(o20),
            mfu(o20, "step_min"),
            lambda v: v >= GOAL_MFU,
            "{:.0%}",
        ),
    ]
    out += ["| goal | median steps | | fastest steps (a check under load) |", "|---|---|---|---|"]
    for label, value, best, test, fmt in checks:
        out.append(
            f"| {label} | {_f(value, fmt)} | {_check(None if value is None else test(value))} "
            f"| {_f(best, fmt)} |"
        )
    fe = o40.get("feature_encoder_channels")
    out += [
        "",
        "FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward + backward of "
        "each model (matmuls, convolutions, attention; CPU SDPA kernels registered with "
        "torch's dense SDPA formula, backward = 2.5 x forward), so elementwise work, "
        "the loss and the optimizer count zero. Encoder frames: steps entering the conformer "
        "stack per audio second. Peak RSS: `ru_maxrss` of the process (imports included). "
        f"Ours: `base` preset with the sizes above, feature-encoder Conv2d channels {fe}, "
        "masking p 0.065 x span 10 (~50 % masked). fairseq2: its `W2VBertConfig` defaults "
        "with these sizes (fbank stacked x 2 + linear front end, masking up to 69 %), the BERT "
        "logits transposed to (M, G, V) to work around its 0.8.1 loss bug. HF: raw-waveform "
        "7-layer CNN (512 channels), contrastive + diversity only.",
        "",
    ]


def _rnnt(results: dict, out: list[str]) -> None:
    rn = results.get("rnnt")
    if not rn:
        return
    pr, fu = rn.get("pruned", {}), rn.get("full", {})
    out += ["## 2. Pruned vs full RNN-T loss (+ gradient)", ""]
    shape = next((r["shape"] for r in (pr, fu) if "shape" in r), {})
    backend = next((r["backend"] for r in (pr, fu) if "backend" in r), "?")
    out += [
        f"N {shape.get('N')}, S {shape.get('S')}, U {shape.get('U')}, K {shape.get('K')}, "
        f"joiner dim {shape.get('J')}, prune range {pr.get('prune_range', 5)}, backend "
        f"{backend}; the joiner on each lattice is included; one process per mode. Memory: "
        "peak RSS minus the RSS before the first loss.",
        "",
        "| loss | s/iteration | peak memory (MB) | peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    for name, r in (("pruned", pr), ("full", fu)):
        if "error" in r:
            out.append(f"| {name} | failed: {r['error']} |||")
        else:
            out.append(
                f"| {name} | {r['sec_per_step']:.3f} | {r['peak_delta_mb']:.0f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
    if "error" not in pr and "error" not in fu:
        mem = fu["peak_delta_mb"] / max(pr["peak_delta_mb"], 1.0)
        speed = fu["sec_per_step"] / pr["sec_per_step"]
        out += [
            "",
            f"Pruned uses **{mem:.1f} x less** peak memory (goal >= {GOAL_RNNT_MEMORY} x: "
            f"{_check(mem >= GOAL_RNNT_MEMORY)}) and is **{speed:.1f} x faster** "
            f"(goal > 1 x: {_check(speed > 1.0)}).",
        ]
    out.append("")


def _fbank(results: dict, out: list[str]) -> None:
    fb = results.get("fbank")
    if not fb:
        return
    out += [
        "## 3. Fbank (80 bins, 60 s of 16 kHz audio)",
        "",
        "| threads | kaldifeat (Lhotse `KaldifeatFbank`) audio-s/s | Lhotse `Fbank` audio-s/s | "
        "kaldifeat / Lhotse |",
        "|---|---|---|---|",
    ]
    for t in (1, 2):
        k, lh = fb.get(f"kaldifeat_{t}", {}), fb.get(f"lhotse_{t}", {})
        kv = k.get("audio_sec_per_sec")
        lv = lh.get("audio_sec_per_sec")
        ratio = kv / lv if kv and lv else None
        out.append(
            f"| {t} | {_f(kv, '{:.0f}', k.get('error', '–'))} | "
            f"{_f(lv, '{:.0f}', lh.get('error', '–'))} | {_f(ratio)} |"
        )
    out.append("")


def _decode(results: dict, out: list[str]) -> None:
    dec = results.get("decode")
    if not dec:
        return
    pt, so = dec.get("pytorch", {}), dec.get("sherpa-onnx", {})
    out += ["## 4. Decoding real-time factor (1 thread)", ""]
    for name, r in (("PyTorch", pt), ("sherpa-onnx", so)):
        if "error" in r:
            out.append(f"- {name}: {r['error']}")
    first = pt if "methods" in pt else so
    if "methods" in first:
        out += [
            f"Random-weight transducer (the benchmark encoder, 40 ms, stateless decoder, "
            f"joiner 512, 500 tokens), {first['num_utts']} noise utterances, "
            f"{first['audio_seconds']:.0f} s in all, batch {first['batch_size']}, beam "
            f"{first['beam']}; time = fbank + encoder + search. Export: "
            f"{_f(so.get('export_s'), '{:.1f} s')}.",
            "",
            "| method | PyTorch RTF | sherpa-onnx RTF | PyTorch / sherpa-onnx | tokens per "
            "audio s (PyTorch) | same hyps |",
            "|---|---|---|---|---|---|",
        ]
        for method in ("greedy_search", "modified_beam_search"):
            a = pt.get("methods", {}).get(method, {})
            b = so.get("methods", {}).get(method, {})
            ratio = a["rtf"] / b["rtf"] if a and b and b.get("rtf") else None
            same = None
            if a and b:
                same = sum(a["hyps"][k] == b["hyps"].get(k) for k in a["hyps"])
                same = f"{same}/{len(a['hyps'])}"
            out.append(
                f"| {method} | {_f(a.get('rtf'), '{:.4f}')} | {_f(b.get('rtf'), '{:.4f}')} | "
                f"{_f(ratio)} | {_f(a.get('tokens_per_audio_s'), '{:.1f}')} | {same or '–'} |"
            )
    out.append("")


def _gpu(out_dir: Path, out: list[str]) -> None:
    out += [
        "## 5. GPU: `xl` pre-training step in bf16",
        "",
        "`python3 bench/gpu_xl_step.py [--compile]` on a lent H100/H200 (one command; on a "
        "machine without CUDA it says so and exits 0). Every `bench/gpu/*.json` is one such run "
        "(batches of 15 s utterances, random fbank, the full w2v-BERT loss, fused AdamW, median "
        "step after warm-up). MFU = FlopCounterMode FLOPs of forward + backward per second over "
        "the dense bf16 spec peak (989 TFLOP/s for H100 SXM / H200), and over a bf16 8192^3 "
        "matmul timed on the same GPU where the run measured one.",
    ]
    rows = []
    for path in sorted((out_dir / "gpu").glob("*.json")):
        r, problem = _read_json(path)
        if problem:
            out += ["", problem]
            continue
        for c in r.get("configs", []):
            rows.append((path.name, r, c))
    if not rows:
        out += ["", "Not measured yet (no GPU lent to the run that wrote this file).", ""]
        return
    out += [
        "",
        "| file | device | mode | batch x s (max-duration) | s/step | audio-s/s | peak GPU mem "
        "| TFLOP/s | MFU (spec) | matmul peak measured | MFU (measured) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r, c in rows:
        mode = "torch.compile" if r.get("compile") else "eager"
        if "error" in c:
            out.append(f"| {name} | {r.get('device')} | {mode} | {c['batch']} | {c['error']} |")
            continue
        out.append(
            f"| {name} | {r.get('device')} | {mode} | {c['batch']} x {c['seconds']:.0f} "
            f"({c['max_duration']:.0f}) | {c['sec_per_step']:.3f} | "
            f"{c['audio_sec_per_sec']:.0f} | {_f(c.get('peak_gpu_mem_gb'), '{:.1f}')} GB | "
            f"{c['tflops_per_s']:.0f} | {_f(c.get('mfu'), '{:.1%}')} | "
            f"{_f(r.get('measured_matmul_tflops'), '{:.0f}')} | "
            f"{_f(c.get('mfu_vs_measured'), '{:.1%}')} |"
        )
    ok = [c for _, _, c in rows if "mfu" in c]
    if ok:
        best = max(ok, key=lambda c: c["mfu"])
        measured = [c["mfu_vs_measured"] for _, _, c in rows if c.get("mfu_vs_measured")]
        out += [
            "",
            "| goal | best | |",
            "|---|---|---|",
            f"| MFU >= 40% (dense bf16 spec peak) | {best['mfu']:.1%} (batch {best['batch']}) | "
            f"{_check(best['mfu'] >= 0.40)} |",
        ]
        if measured:
            out.append(
                f"| MFU >= 40% (bf16 matmul peak measured on the same GPU) | "
                f"{max(measured):.1%} | {_check(max(measured) >= 0.40)} |"
            )
    profiles = sorted((out_dir / "gpu").glob("*profile*.txt"))
    if profiles:
        out += [
            "",
            "Top kernels by GPU time (torch.profiler, `--profile`): "
            + ", ".join(f"`bench/gpu/{p.name}`" for p in profiles)
            + ".",
        ]
    out.append("")


def _profile(results: dict, out: list[str]) -> None:
    prof = results.get("profile")
    if not prof:
        return
    out += ["## Profile of our step (torch.profiler, self CPU time)", ""]
    for name, r in prof.items():
        if "error" in r:
            out.append(f"- {name}: failed: {r['error']}")
            continue
        out += [
            f"**{name}**: {r['self_cpu_ms_per_step']:.0f} ms self CPU per step (profiler "
            "overhead included); full table in `bench/logs/`.",
            "",
            "| op | calls/step | ms/step | share |",
            "|---|---|---|---|",
        ]
        for row in r["top_ops"][:12]:
            out.append(
                f"| `{row['op']}` | {row['calls_per_step']} | "
                f"{row['self_cpu_ms_per_step']:.1f} | {row['share']:.1%} |"
            )
        out.append("")


def data_prep_lines(r: dict) -> list[str]:
    """Section 6 from a ``bench/data_prep_memory.py`` result (``bench/data_prep/memory.json``)."""
    out = [
        "## 6. Data preparation memory (stages 1-2 at 1x, 10x, 100x the mini corpus)",
        "",
        "`python3 bench/data_prep_memory.py` (hard-linked corpora of the mini corpus's shape, only "
        "the manifests grow; each stage in its own process, `--nj 1`; peak RSS = its `ru_maxrss`). "
        f"{r['date']}, {r['cpus']} cores, load average {r['load_average']:.2f}.",
        "",
        "| scale | recordings | cuts | stage 1 peak RSS (MB) | stage 1 s | stage 2 peak RSS (MB) | stage 2 s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = r["rows"]
    for row in rows:
        s1, s2 = row["stage1"], row["stage2"]
        out.append(
            f"| {row['scale']}x | {row['recordings']} | {row['cuts']} | {s1['peak_rss_mb']:.0f} | "
            f"{s1['seconds']:.0f} | {s2['peak_rss_mb']:.0f} | {s2['seconds']:.0f} |"
        )
    by = {row["scale"]: row for row in rows}
    if 10 in by and 100 in by:
        for stage in ("stage1", "stage2"):
            ratio = by[100][stage]["peak_rss_mb"] / by[10][stage]["peak_rss_mb"]
            out.append("")
            out.append(
                f"{stage.replace('stage', 'Stage ')}: 100x / 10x peak RSS = **{ratio:.2f}** "
                f"(goal <= 1.3: {_check(ratio <= 1.3)})."
            )
    mix = r.get("mixing")
    if mix:
        a, b = mix["recording_order"], mix["shuffled"]
        out += [
            "",
            f"Mixing at {max(by)}x ({mix['num_cuts']} unlabelled cuts): batch {a['batch']} of the "
            f"training sampler drew {a.get('num_cuts')} cuts from positions {a.get('first')}-"
            f"{a.get('last')} (recording order) of the part's own cuts file, and "
            f"{b.get('num_cuts')} cuts from positions {b.get('first')}-{b.get('last')} of the "
            f"shuffled `_cuts_pretrain.jsonl.gz`.",
        ]
    return out + ["", _DATA_PREP_NOTE, ""]


_DATA_PREP_NOTE = (
    "Where the memory goes. Stage 1 (`w2vbert/prep/manifests.py`) checks and parses each part one "
    "directory at a time and writes its manifests one recording at a time (Lhotse's sequential "
    "writers; the layout checks count every problem and hold the first 20), so what it holds grows "
    "with a directory, not with the corpus (besides the set of speaker ids for its log line). "
    "Stage 2, measured at 10x in one process (`/proc/self/statm`, 2026-12-01): 234 MB after "
    "imports, 249 MB after the first part (kaldifeat and Lhotse initialised), 251 MB after the "
    "18,000-cut Libri-Light part (features and cuts streamed: flat), 270 MB after the shuffled "
    "union (one bucket of <= 20,000 JSON lines in memory at a time; "
    "`w2vbert/prep/shuffle_cuts.py`: at most 256 buckets, so beyond 5.1M cuts a bucket holds "
    "N/256 lines, ~80 MB for 20M Libri-Light segments). Times are from a shared machine (2 cores, "
    "other work running; see the load average above)."
)


def _data_prep(out_dir: Path, out: list[str]) -> None:
    path = out_dir / "data_prep" / "memory.json"
    if not path.is_file():
        return
    r, problem = _read_json(path)
    if problem:
        out += ["## 6. Data preparation memory", "", problem, ""]
        return
    out += data_prep_lines(r)


def _read_json(path: Path) -> tuple[dict, str]:
    """``(data, "")``, or ``({}, a line that says what is wrong with the file and where)``: an
    optional section's unreadable input must not cost the whole report."""
    try:
        return json.loads(path.read_text()), ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, f"**Not rendered**: `{path.as_posix()}` is unreadable ({type(e).__name__}: {e})."


def _section(render, source, out: list[str]) -> None:
    """Appends one section rendered from ``source`` (the results dict or the bench directory);
    a section whose input is malformed says so in place of its table, and the others are still
    written."""
    part: list[str] = []
    try:
        render(source, part)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        name = render.__name__.lstrip("_")
        part = [
            "",
            f"**Not rendered**: section `{name}` failed on its input ({type(e).__name__}: {e}; "
            "raw numbers in `bench/results.json`, inputs under `bench/`).",
            "",
        ]
    out += part


def write_report(results: dict, path: Path) -> None:
    m = results["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Written by `{results['command']}` (see `bench/results.json` for the raw numbers, "
        f"`bench/logs/` for each process's log); {results.get('total_wall_s', 0) / 60:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads per measurement, "
        f"torch {m['torch']}, Python {m['python']}, {m['date']}; load average "
        f"{m['load_avg_at_start'][0]} at start, {m.get('load_avg_at_end', ['?'])[0]} at end.",
        "",
    ]
    if results.get("note"):
        out += [f"> {results['note']}", ""]
    peers = results.get("peers", {})
    if peers:
        desc = []
        for name, info in peers.items():
            if "error" in info:
                desc.append(f"{name}: unavailable ({info['error']})")
            else:
                vers = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                desc.append(f"{name}: {vers} (venv installed in {info['install_s']:.0f} s)")
        out += [
            "Peers (own venvs under `~/.cache/w2vbert/bench-venvs/`): " + "; ".join(desc) + ".",
            "",
        ]
    for render in (_pretrain, _rnnt, _fbank, _decode):
        _section(render, results, out)
    _section(_gpu, path.parent, out)
    _section(_data_prep, path.parent, out)
    _section(_profile, results, out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out).rstrip() + "\n")
    tmp.replace(path)
