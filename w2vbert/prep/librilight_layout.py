"""Libri-Light layout parts: ``<spk>/<book>/<name>.flac`` beside ``<name>.json`` (``speaker``
and ``voice_activity``: ``[[start, end], ...]`` in seconds), one directory at a time.

The manifests equal those of Lhotse's Libri-Light reader (``lhotse.recipes.librilight``: the same
order, recording ids ``<part>/<spk>/<book>/<name>``, sources (the resolved audio path),
durations, and one supervision ``<recording id>_<n>`` per VAD segment), but are produced one
recording at a time instead of as whole sets in memory. The JSON is the one beside the audio
file as named in the part (Lhotse's reader derives it from the resolved path by replacing every
"flac" in it, which fails for directories with "flac" in their names).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lhotse import Recording, SupervisionSegment
from lhotse.utils import add_durations

from w2vbert.prep.corpus_problems import CorpusError, Problems
from w2vbert.prep.corpus_walk import walk_directories
from w2vbert.prep.recording_header import read_recording

VAD_SAMPLING_RATE = 16000  # segment durations are whole samples at this rate, as Lhotse's reader


def read_metadata(meta_path: Path) -> tuple[Any, list[list[float]]]:
    """``(speaker, voice_activity)`` of a Libri-Light JSON; raises CorpusError naming the file
    when it is not valid JSON, has no ``speaker`` or no valid ``voice_activity``."""
    try:
        meta = json.loads(Path(meta_path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorpusError(f"{meta_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or "speaker" not in meta:
        raise CorpusError(f"{meta_path}: no 'speaker' field")
    segments = meta.get("voice_activity")
    if not isinstance(segments, list) or not segments:
        raise CorpusError(f"{meta_path}: 'voice_activity' must be a non-empty list of [start, end]")
    for seg in segments:
        ok = isinstance(seg, list) and len(seg) == 2
        ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg)
        if not ok or not 0 <= seg[0] < seg[1]:
            raise CorpusError(
                f"{meta_path}: voice_activity segment {seg!r} is not [start, end] with "
                "0 <= start < end"
            )
    return meta["speaker"], segments


def check_librilight_part(part_dir: Path) -> Problems:
    """Problems of a Libri-Light-layout part (audio vs JSON metadata), directory by directory."""
    problems = Problems()
    for directory, names in walk_directories(Path(part_dir)):
        for name in names:
            path = directory / name
            if name.endswith(".flac"):
                meta_path = path.with_suffix(".json")
                if not meta_path.is_file():
                    problems.add(f"{path}: audio file without its Libri-Light JSON {meta_path}")
                    continue
                try:
                    read_metadata(meta_path)
                except CorpusError as e:
                    problems.add(str(e))
            elif name.endswith(".json") and not path.with_suffix(".flac").is_file():
                problems.add(f"{path}: Libri-Light JSON without its audio file")
    return problems


def librilight_items(corpus_dir: Path, part: str) -> Iterator[tuple[Path, str]]:
    """``(audio path, recording id)`` of every recording of a checked part, in Lhotse's order
    (``rglob("*.flac")``)."""
    corpus_dir = Path(corpus_dir)
    for directory, names in walk_directories(corpus_dir / part):
        for name in names:
            if name.endswith(".flac"):
                path = directory / name
                yield path, str(path.relative_to(corpus_dir)).removesuffix(".flac")


def read_librilight_item(item: tuple[Path, str]) -> tuple[Recording, list[SupervisionSegment]]:
    """The recording and its VAD segments, as Lhotse's Libri-Light reader makes them; raises
    CorpusError naming the audio file when it cannot be read."""
    path, recording_id = item
    speaker, vad = read_metadata(path.with_suffix(".json"))
    recording = read_recording(path.resolve(), recording_id)
    segments = [
        SupervisionSegment(
            id=f"{recording_id}_{k}",
            recording_id=recording_id,
            start=start,
            duration=add_durations(end, -start, sampling_rate=VAD_SAMPLING_RATE),
            channel=0,
            language="English",
            speaker=speaker,
        )
        for k, (start, end) in enumerate(vad)
    ]
    return recording, segments
