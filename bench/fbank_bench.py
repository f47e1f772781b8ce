#!/usr/bin/env python
"""80-dim fbank throughput: kaldifeat (``w2vbert.data.fbank``) vs Lhotse ``Fbank``.

The kaldifeat side is the recipe's fbank (Lhotse ``KaldifeatFbank`` with icefall's options).

One extractor and thread count per process. Input: ``--seconds`` of random 16 kHz audio,
extracted ``--steps`` times after a warm-up; audio-seconds per second from the median.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import emit, set_threads, step_summary, time_steps  # noqa: E402
from _step_args import add_timing_args  # noqa: E402


def make_extractor(name: str):
    """``kaldifeat`` or ``lhotse``: an object with ``extract(samples, sampling_rate)``."""
    if name == "lhotse":
        from lhotse import Fbank, FbankConfig

        return Fbank(FbankConfig(num_mel_bins=80))
    try:  # the recipe's own fbank definition (kaldifeat through Lhotse, icefall's options)
        from w2vbert.data.fbank import fbank_extractor

        return fbank_extractor()
    except ImportError:
        from lhotse.features.kaldifeat import (
            KaldifeatFbank,
            KaldifeatFbankConfig,
            KaldifeatMelOptions,
        )

        return KaldifeatFbank(KaldifeatFbankConfig(mel_opts=KaldifeatMelOptions(num_bins=80)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("extractor", choices=["kaldifeat", "lhotse"])
    p.add_argument("--seconds", type=float, default=60.0)
    add_timing_args(p, threads=1)
    a = p.parse_args()
    set_threads(a.threads)
    import numpy as np

    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(int(a.seconds * 16000))).astype(np.float32)
    extractor = make_extractor(a.extractor)
    out = {}

    def step() -> None:
        out["feats"] = extractor.extract(samples, 16000)

    times = time_steps(step, warmup=a.warmup, steps=a.steps)
    result = step_summary(times, a.seconds)
    result.update(
        extractor=a.extractor,
        feats_shape=list(out["feats"].shape),
        extractor_class=type(extractor).__name__,
    )
    emit(result)


if __name__ == "__main__":
    main()
