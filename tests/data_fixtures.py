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


def make_librilight_tree(
    root: Path,
    subsets: tuple[str, ...] = ("small",),
    num_speakers: int = 2,
    minutes: float = 2.0,
    long_segment: float | None = 45.0,
    seed: int = 0,
) -> dict[Path, list[list[float]]]:
    """A simulated Libri-Light tree: ``root/<subset>/<speaker>/<book>/<name>.flac`` and
    ``<name>.json`` (``speaker``, ``voice_activity`` [[start, end], ...] in seconds,
    ``book_meta``), one recording of about ``minutes`` per speaker: chirps of 0.5-9 s ("speech") between 0.2-2.5 s silences,
    and, in the first recording, one speech segment of ``long_segment`` s (longer than a cut).

    Returns ``{flac path: voice_activity}``.
    """
    rng = np.random.default_rng(seed)
    out: dict[Path, list[list[float]]] = {}
    sr = 16000
    for subset in subsets:
        for k in range(num_speakers):
            speaker = f"{1000 + 10 * len(out) + k}"
            pieces, vad, t = [], [], 0.0
            lead = round(float(rng.uniform(0.2, 1.0)), 2)
            pieces.append(np.zeros(int(lead * sr), np.float32))
            t = lead
            n = 0
            while t < minutes * 60.0:
                seconds = long_segment if (n == 3 and not out and long_segment) else None
                seconds = seconds or round(float(rng.uniform(0.5, 9.0)), 2)
                gap = round(float(rng.uniform(0.2, 2.5)), 2)
                pieces.append(signal(seconds, seed=int(rng.integers(1 << 30))))
                pieces.append(np.zeros(int(gap * sr), np.float32))
                vad.append([round(t, 2), round(t + seconds, 2)])
                t = round(t + seconds + gap, 2)
                n += 1
            book = root / subset / speaker / f"book_{k}"
            path = write_flac(book / f"chapter_{k:02d}_64kb.flac", np.concatenate(pieces))
            meta = {"speaker": speaker, "voice_activity": vad, "book_meta": {"id": str(k)}}
            path.with_suffix(".json").write_text(json.dumps(meta))
            out[path] = vad
    return out


def make_librispeech_tree(
    root: Path, utterances: int = 3, seconds: float = 3.0
) -> dict[str, dict[str, Path]]:
    """A simulated LibriSpeech tree with all seven parts, ``utterances`` files of ``seconds`` each
    (ids distinct across parts, transcripts of 4-6 words from a few dozen; 3 s leave enough encoder
    steps for them with a tiny BPE model). Returns ``{part: {id: path}}``."""
    words = (
        "THE QUICK BROWN FOX JUMPS OVER A LAZY DOG WHILE SEVEN BIRDS SING IN THE GREEN TREE "
        "AND MY FRIEND READS HER BOOK BY THE OLD RIVER UNTIL NIGHT COMES"
    ).split()
    parts = ("train-clean-100", "train-clean-360", "train-other-500",
             "dev-clean", "dev-other", "test-clean", "test-other")  # fmt: skip
    tree = {}
    for p, part in enumerate(parts):
        texts = {}
        for u in range(utterances):
            spk, chapter = 100 + p, 1000 + p
            start = (7 * p + 3 * u) % len(words)
            texts[f"{spk}-{chapter}-{u:04d}"] = " ".join((words * 2)[start : start + 4 + u % 3])
        tree[part] = make_librispeech_part(root, part, texts, seconds)
    return tree
