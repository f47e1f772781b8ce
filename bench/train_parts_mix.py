#!/usr/bin/env python3
"""How several --train-cuts manifests mix over an epoch: CutSet.mux (what w2vbert.finetune does)
against chaining the files, through the training sampler (DynamicBucketingSampler, 30 buckets,
12k-cut shuffle buffer, 600 s batches).

    python bench/train_parts_mix.py [--scale 0.1] [--work-dir /tmp/train_parts_mix]

Dummy cuts of 2-17 s in LibriSpeech 960 h's part proportions (train-clean-100 / -360 /
-other-500: 28539 / 104014 / 148688 cuts, times --scale). Prints each part's share of the cuts in
the first and last 10 % of the epoch's batches, and the time to count the cuts (line count)
against reading them with Lhotse.
"""

import argparse
import time
from pathlib import Path

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut

from w2vbert.data.sampling import count_cuts, load_train_cuts

PARTS = {"train-clean-100": 28539, "train-clean-360": 104014, "train-other-500": 148688}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/train_parts_mix"))
    args = p.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, num in PARTS.items():
        path = args.work_dir / f"cuts_{part}_{args.scale:g}.jsonl.gz"
        if not path.is_file():
            cuts = (dummy_cut(i, duration=2 + (i * 7919 % 150) / 10).with_id(f"{part}/{i}")
                    for i in range(int(num * args.scale)))  # fmt: skip
            CutSet.from_cuts(cuts).to_file(path)
        paths.append(path)
    t0 = time.perf_counter()
    counted = sum(count_cuts(p) for p in paths)
    t1 = time.perf_counter()
    read = sum(1 for p in paths for _ in CutSet.from_file(p))
    t2 = time.perf_counter()
    print(f"{counted} cuts: count_cuts {t1 - t0:.2f} s, reading {read} with Lhotse {t2 - t1:.2f} s")
    mux, chain = load_train_cuts(paths, "--train-cuts"), CutSet.from_files(paths)
    for how, cuts in (("mux", mux), ("chain", chain)):
        sampler = DynamicBucketingSampler(
            cuts, max_duration=600, num_buckets=30, shuffle=True, seed=0, buffer_size=12000
        )
        sampler.set_epoch(1)
        batches = list(sampler)
        tenth = max(1, len(batches) // 10)

        def shares(bs: list) -> str:
            ids = [c.id.split("/")[0] for b in bs for c in b]
            return " ".join(f"{part} {ids.count(part) / len(ids):.2f}" for part in PARTS)

        print(f"{how}: {len(batches)} batches; first 10 %: {shares(batches[:tenth])}; "
              f"last 10 %: {shares(batches[-tenth:])}")  # fmt: skip


if __name__ == "__main__":
    main()
