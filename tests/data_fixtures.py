"""Hand-built LibriSpeech/Libri-Light layout corpora for the data-stage tests (no espeak-ng)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf


def signal(seconds: float, sampling_rate: int = 16000, seed: int = 0, channels: int = 1):
    """A chirp plus noise, ``(L,)`` or ``(L, channels)`` float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + 0.01 * rng.standard_normal(len(t))
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def write_flac(path: Path, samples: np.ndarray, sampling_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sampling_rate, format="FLAC", subtype="PCM_16")
    return path


def make_librispeech_part(
    root: Path,
    part: str = "train-x",
    texts: dict[str, str] | None = None,
    seconds: float = 1.0,
    sampling_rate: int = 16000,
    channels: int = 1,
) -> dict[str, Path]:
    """Writes ``root/part/<spk>/<chapter>/`` with one FLAC per utterance id and trans.txt files.

    Returns ``{utterance id: flac path}``.
    """
    texts = texts or {
        "11-100-0000": "HELLO THERE MY FRIEND",
        "11-100-0001": "THE QUICK BROWN FOX",
        "12-200-0000": "JUMPS OVER THE LAZY DOG",
    }
    paths = {}
    by_chapter: dict[Path, list[str]] = {}
    for k, (utt_id, text) in enumerate(sorted(texts.items())):
        spk, chapter, _ = utt_id.split("-")
        d = root / part / spk / chapter
        paths[utt_id] = write_flac(
            d / f"{utt_id}.flac",
            signal(seconds, sampling_rate, seed=k, channels=channels),
            sampling_rate,
        )
        by_chapter.setdefault(d / f"{spk}-{chapter}.trans.txt", []).append(f"{utt_id} {text}")
    for trans, lines in by_chapter.items():
        trans.write_text("\n".join(lines) + "\n")
    return paths


def make_librilight_part(root: Path, part: str = "unlab-x", num_files: int = 2) -> list[Path]:
    """Writes ``root/part/<spk>/<book>/<name>.flac`` + JSON with two voice segments each."""
    paths = []
    for k in range(num_files):
        d = root / part / str(20 + k) / f"book_{k}"
        path = write_flac(d / f"{20 + k}_{k}_000.flac", signal(3.0, seed=10 + k))
        meta = {"speaker": str(20 + k), "voice_activity": [[0.1, 1.2], [1.5, 2.9]]}
        path.with_suffix(".json").write_text(json.dumps(meta))
        paths.append(path)
    return paths
