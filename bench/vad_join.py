#!/usr/bin/env python3
"""Speed and result of joining Libri-Light VAD segments (w2vbert.prep.segmentation) on simulated
recordings: --recordings of 250 segments each, 0.5-9 s of speech between 0.2-2.5 s pauses.

    python bench/vad_join.py [--recordings 2000] [--max-cut-duration 30]
"""

import argparse
import random
import time

from lhotse import SupervisionSegment

from w2vbert.prep.segmentation import join_recording_segments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--recordings", type=int, default=2000)
    p.add_argument("--max-cut-duration", type=float, default=30.0)
    args = p.parse_args()
    rng = random.Random(0)
    vad = []
    for r in range(args.recordings):
        t = 0.5
        for k in range(250):
            speech, pause = round(rng.uniform(0.5, 9.0), 2), round(rng.uniform(0.2, 2.5), 2)
            vad.append(SupervisionSegment(f"r{r}_{k}", f"r{r}", start=t, duration=speech))
            t = round(t + speech + pause, 2)
    t0 = time.perf_counter()
    joined = list(join_recording_segments(vad, args.max_cut_duration))
    seconds = time.perf_counter() - t0

    def mean(segments: list) -> float:
        return sum(s.duration for s in segments) / len(segments)

    print(
        f"{len(vad)} VAD segments (mean {mean(vad):.2f} s) -> {len(joined)} segments (mean "
        f"{mean(joined):.2f} s, max {max(s.duration for s in joined):.2f} s) in {seconds:.2f} s "
        f"({len(vad) / seconds / 1000:.0f}k VAD segments/s)"
    )


if __name__ == "__main__":
    main()
