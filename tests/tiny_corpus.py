"""Tiny in-test corpora for the CLI tests: a few seconds of tones + noise with fbank and transcripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, Recording, RecordingSet
from lhotse import SupervisionSegment, SupervisionSet

# The training flags every tiny CLI test run shares (small batches, short warm-up, CPU).
TRAIN_FLAGS = ["--max-duration", "4", "--num-buckets", "2", "--warmup-steps", "5",
               "--log-interval", "1", "--device", "cpu"]  # fmt: skip

TEXTS = [
    "HELLO WORLD",
    "GOOD MORNING",
    "HELLO THERE",
    "GOOD NIGHT WORLD",
    "MORNING THERE",
    "NIGHT NIGHT",
]


def make_cuts(root: Path, name: str, num: int = 6, seed: int = 0) -> Path:
    """Write ``num`` 0.8-1.8 s 16 kHz utterances with 80-dim fbank; returns the cuts manifest path."""
    rng = np.random.default_rng(seed)
    audio_dir = root / f"{name}_wav"
    audio_dir.mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    for i in range(num):
        duration = 0.8 + 0.2 * (i % 6)
        t = np.arange(int(16000 * duration)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.shape)
        path = audio_dir / f"{name}-{i}.wav"
        sf.write(path, wave.astype(np.float32), 16000)
        rec = Recording.from_file(path, recording_id=f"{name}-{i}")
        recordings.append(rec)
        supervisions.append(
            SupervisionSegment(
                id=f"{name}-{i}",
                recording_id=rec.id,
                start=0.0,
                duration=rec.duration,
                text=TEXTS[i % len(TEXTS)],
            )
        )
    cuts = CutSet.from_manifests(
        recordings=RecordingSet.from_recordings(recordings),
        supervisions=SupervisionSet.from_segments(supervisions),
    )
    cuts = cuts.compute_and_store_features(
        extractor=Fbank(FbankConfig(num_mel_bins=80)),
        storage_path=root / f"{name}_feats",
        storage_type=LilcomChunkyWriter,
        num_jobs=1,
    )
    out = root / f"cuts_{name}.jsonl.gz"
    cuts.to_file(out)
    return out


def make_bpe(root: Path, vocab_size: int = 20) -> Path:
    """A sentencepiece unigram model with <blk>=0, <sos/eos>=1, <unk>=2 (the recipe's layout)."""
    import sentencepiece as spm

    text = root / "text.txt"
    text.write_text("\n".join(TEXTS * 20) + "\n")
    prefix = root / "bpe"
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        user_defined_symbols=["<blk>", "<sos/eos>"],
        unk_id=2,
        bos_id=-1,
        eos_id=-1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")
