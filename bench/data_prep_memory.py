#!/usr/bin/env python3
"""Peak RSS of stages 1 and 2 for corpora 1x, 10x and 100x the size of the mini corpus.

  python3 bench/data_prep_memory.py                       # scales 1 10 100: 8-11 min on 2 shared cores
  python3 bench/data_prep_memory.py --scales 1 10 --keep  # keep the work dir to look at

Each scale is a corpus of the mini corpus's shape (per 1x: 330 LibriSpeech-layout training
utterances, 80 dev utterances, 360 Libri-Light-layout recordings of 5 voice segments each: 770
recordings, 2,210 cuts; the mini corpus has 852 and 2,310), every file a hard link to one short
FLAC (0.4 s per utterance, 3 s per Libri-Light recording), so only the manifests grow. Stage 1
(``local/prepare_manifests.py``) and stage 2 (``local/compute_fbank.py --nj 1``, the unlabelled
part as pre-training union) each run in a fresh process; the peak RSS is that process's
``ru_maxrss`` (``RUSAGE_CHILDREN`` of a helper process that runs only it). At the largest scale
it also measures how well mixed the pre-training cuts are: the training sampler (the recipe's
``DataConfig`` defaults: 200 s batches, 30 buckets, a 12,000-cut shuffle buffer) draws batch 200
from the part's recording-ordered cuts and from the shuffled union; the positions (in recording
order) of that batch's cuts are reported. Writes ``bench/data_prep/memory.json`` and prints a
table; ``bench/report.py`` renders it into ``bench/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PER_SCALE = {"train": 330, "dev": 80, "unlab": 360}
SEGMENTS = [[0.1 + 0.55 * k, 0.5 + 0.55 * k] for k in range(5)]  # 5 x 0.4 s in 3 s
MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, 'stderr': p.stderr[-3000:],\n"
    "  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
)


def build_corpus(root: Path, scale: int) -> dict[str, int]:
    """Hard-linked LibriSpeech/Libri-Light layout parts of ``scale`` x the per-scale counts."""
    from data_fixtures import signal, write_flac

    utt = write_flac(root / "audio" / "utt.flac", signal(0.4))
    book = write_flac(root / "audio" / "book.flac", signal(3.0, seed=1))
    for part in ("train", "dev"):
        n = PER_SCALE[part] * scale
        for first in range(0, n, 100):  # 100 utterances per chapter
            spk, chapter = (1000 if part == "train" else 3000) + first // 1000, first // 100
            d = root / "corpus" / f"{part}-bench" / str(spk) / str(chapter)
            d.mkdir(parents=True)
            lines = []
            for i in range(first, min(n, first + 100)):
                name = f"{spk}-{chapter}-{i:06d}"
                os.link(utt, d / f"{name}.flac")
                lines.append(f"{name} A SHORT SENTENCE")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    for i in range(PER_SCALE["unlab"] * scale):  # 10 recordings per book, 10 books per speaker
        spk, bk = 5000 + i // 100, i // 10
        d = root / "corpus" / "unlab-bench" / str(spk) / f"book_{bk}"
        d.mkdir(parents=True, exist_ok=True)
        os.link(book, d / f"{spk}_{bk}_{i:06d}.flac")
        meta = {"speaker": str(spk), "voice_activity": SEGMENTS}
        (d / f"{spk}_{bk}_{i:06d}.json").write_text(json.dumps(meta))
    recordings = sum(PER_SCALE.values()) * scale
    cuts = (PER_SCALE["train"] + PER_SCALE["dev"] + PER_SCALE["unlab"] * len(SEGMENTS)) * scale
    return {"recordings": recordings, "cuts": cuts}


def measure(cmd: list[str]) -> dict:
    """Runs ``cmd`` under a helper process; its peak RSS (MiB), seconds and return code."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result['stderr']}")
    del result["stderr"]
    return result


def batch_positions(cuts_path: Path, position: dict[str, int], batch: int = 200) -> dict:
    """Positions (in ``position``'s order) of the cuts of batch ``batch`` of the training sampler."""
    from lhotse import CutSet

    from w2vbert.data.sampling import DataConfig, create_sampler

    sampler = create_sampler(CutSet.from_jsonl_lazy(cuts_path), DataConfig(), train=True)
    for i, cuts in enumerate(sampler):
        if i == batch:
            got = sorted(position[c.id] for c in cuts)
            return {"batch": batch, "num_cuts": len(got), "first": got[0], "last": got[-1]}
    return {"batch": batch, "error": f"only {i + 1} batches"}


def mixing(fbank_dir: Path) -> dict:
    """Batch 200 of the part's own (recording-ordered) cuts and of the shuffled union."""
    from lhotse import CutSet

    part = fbank_dir / "bench_cuts_unlab-bench.jsonl.gz"
    position = {c.id: i for i, c in enumerate(CutSet.from_jsonl_lazy(part))}
    return {
        "num_cuts": len(position),
        "recording_order": batch_positions(part, position),
        "shuffled": batch_positions(fbank_dir / "bench_cuts_pretrain.jsonl.gz", position),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--work-dir", type=Path, help="default: a temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "data_prep" / "memory.json")
    args = p.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="data_prep_memory."))
    rows = []
    try:
        for scale in args.scales:
            root = work / f"x{scale}"
            shutil.rmtree(root, ignore_errors=True)
            t = time.perf_counter()
            size = build_corpus(root, scale)
            print(
                f"x{scale}: corpus of {size['cuts']} cuts built in {time.perf_counter() - t:.0f} s",
                file=sys.stderr,
            )
            stage1 = measure([sys.executable, str(REPO / "local" / "prepare_manifests.py"),
                              "--corpus-dir", str(root / "corpus"), "--output-dir", str(root / "m"),
                              "--prefix", "bench", "--nj", "1"])  # fmt: skip
            stage2 = measure([sys.executable, str(REPO / "local" / "compute_fbank.py"),
                              "--manifest-dir", str(root / "m"), "--output-dir", str(root / "f"),
                              "--prefix", "bench", "--nj", "1", "--pretrain-parts", "unlab-bench"])  # fmt: skip
            row = {"scale": scale, **size, "stage1": stage1, "stage2": stage2}
            print(f"x{scale}: {json.dumps(row)}", file=sys.stderr, flush=True)
            rows.append(row)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0],
            "rows": rows,
            "mixing": mixing(work / f"x{max(args.scales)}" / "f"),
        }
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    from bench.report import data_prep_lines

    print("\n".join(data_prep_lines(result)))


if __name__ == "__main__":
    main()
