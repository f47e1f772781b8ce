"""How close each streamable input normalisation stays to the per-utterance one (issue 28).

An encoder pre-trained with per-utterance mean/variance normalisation per mel bin (ours by default,
w2v-BERT 2.0's feature extractor) must, to stream, see an input that needs no future frames. This
measures, on real speech (AN4, see ../shared/data/README.md), the RMS distance of the streamable
choices from the per-utterance-normalised fbank the encoder was pre-trained on: statistics stored in
the model (estimated on training speakers, applied to unseen test speakers), a per-frame
standardisation over the mel bins (the "frame" LayerNorm at initialisation), and no normalisation.

    python bench/streaming_input_norm.py /path/to/an4   # an4/ of an4_raw.bigendian.tar.gz
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from w2vbert.data.fbank import fbank_extractor


def _fbank(path: Path, extractor) -> torch.Tensor:
    samples = np.fromfile(path, dtype=">i2").astype(np.float32) / 32768.0
    return torch.as_tensor(extractor.extract(samples, 16000))  # (T, 80)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("an4", type=Path)
    parser.add_argument("--num-train", type=int, default=300)
    args = parser.parse_args()
    extractor = fbank_extractor()
    train = sorted((args.an4 / "wav" / "an4_clstk").rglob("*.raw"))
    random.Random(0).shuffle(train)
    test = sorted((args.an4 / "wav" / "an4test_clstk").rglob("*.raw"))
    frames = torch.cat([_fbank(p, extractor) for p in train[: args.num_train]]).double()
    mean, std = frames.mean(0), frames.std(0, unbiased=False)
    dist = {"stored statistics (global)": [], "per-frame standardisation": [], "none": []}
    for p in test:
        x = _fbank(p, extractor).double()
        ref = (x - x.mean(0)) / x.std(0, unbiased=False)  # per utterance, per bin
        frame = (x - x.mean(1, keepdim=True)) / x.std(1, unbiased=False, keepdim=True)
        for name, z in zip(dist, ((x - mean) / std, frame, x)):
            dist[name].append(float((z - ref).square().mean().sqrt()))
    print(
        f"{len(test)} AN4 test utterances (10 unseen speakers); statistics from {args.num_train} "
        "training utterances. RMS distance from the per-utterance-normalised fbank "
        "(unit variance per bin):"
    )
    for name, values in dist.items():
        print(
            f"  {name:28s} mean {np.mean(values):.3f}  median {np.median(values):.3f}  "
            f"max {np.max(values):.3f}"
        )


if __name__ == "__main__":
    main()
