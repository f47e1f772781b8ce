"""Cuts of one part streamed from its recordings and supervisions manifests, in constant memory.

The two ``.jsonl.gz`` manifests are read lazily side by side: the supervisions must come in the
recordings' order (all supervisions of a recording together, recordings without supervisions
allowed), which is what stage 1 and Lhotse's recipes write. A supervision whose recording is not
next in the recordings file is an error naming both. Each recording and its supervisions give
cuts exactly as ``CutSet.from_manifests(...).trim_to_supervisions(keep_overlapping=False)``
does (one cut per supervision, id = supervision id), 16 kHz mono: a multi-channel recording is
downmixed into a mono FLAC copy, another sampling rate resampled on loading (both counted in
:class:`StreamStats`).

A range ``[start, stop)`` of recording ordinals selects a piece of the part: pieces of
contiguous ranges, concatenated in order, give the cuts of the whole part in the same order.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet, load_manifest_lazy
from lhotse.cut import Cut

from w2vbert.data.fbank import SAMPLING_RATE


class StreamError(ValueError):
    """The manifests cannot be streamed (order, missing audio); the message names the item."""


@dataclass
class StreamStats:
    """What a pass over a piece did to its recordings (for the log)."""

    num_recordings: int = 0
    downmixed: int = 0
    resampled_rates: Counter[int] = field(default_factory=Counter)
    num_resampled: int = 0


def count_lines(path: Path) -> int:
    """Lines of a (gzipped) JSONL manifest: its number of items, without parsing them."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def piece_range(num_items: int, num_pieces: int, piece: int) -> tuple[int, int]:
    """``[start, stop)`` of piece ``piece`` of ``num_pieces`` contiguous, near-equal ranges."""
    if not 0 <= piece < num_pieces:
        raise ValueError(f"`piece` must be in [0, {num_pieces}), but is {piece} instead.")
    return num_items * piece // num_pieces, num_items * (piece + 1) // num_pieces


def downmix_recording(recording: Recording, out_dir: Path) -> Recording:
    """A mono copy of a multi-channel recording: the mean of its channels, written as 16-bit
    FLAC into ``out_dir`` (Lhotse's own downmix keeps the audio in memory, which a manifest
    cannot store)."""
    samples = recording.load_audio()  # (C, L)
    path = Path(out_dir) / (recording.id.replace("/", "__") + ".flac")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.mean(axis=0), recording.sampling_rate, format="FLAC", subtype="PCM_16")
    return Recording.from_file(path, recording_id=recording.id)


def _grouped_supervisions(sup_path: Path) -> Iterator[tuple[str, list]]:
    """``(recording_id, [supervisions])`` for each run of supervisions of one recording."""
    current, group = None, []
    for sup in load_manifest_lazy(sup_path):
        if sup.recording_id != current and group:
            yield current, group
            group = []
        current = sup.recording_id
        group.append(sup)
    if group:
        yield current, group


def _recordings_with_supervisions(
    rec_path: Path, sup_path: Path, part: str
) -> Iterator[tuple[int, Recording, list]]:
    """``(ordinal, recording, supervisions)`` for every recording, in the recordings' order."""
    recordings = enumerate(load_manifest_lazy(rec_path))
    for rec_id, sups in _grouped_supervisions(sup_path):
        for ordinal, rec in recordings:
            if rec.id == rec_id:
                yield ordinal, rec, sups
                break
            yield ordinal, rec, []
        else:  # a recording already passed (supervisions not grouped) or not in the file
            raise StreamError(
                f"Part {part}: supervision {sups[0].id} refers to recording {rec_id}, which is "
                f"not among the recordings after the previous one in {rec_path}; stage 2 streams "
                "the two manifests side by side and needs the supervisions grouped by recording, "
                "in the recordings' order (as Lhotse's recipes write them)"
            )
    for ordinal, rec in recordings:
        yield ordinal, rec, []


def missing_audio(rec_path: Path, start: int, stop: int, limit: int = 10) -> tuple[list[str], int]:
    """Up to ``limit`` messages for recordings ``[start, stop)`` whose audio file is missing,
    and their total count."""
    messages, count = [], 0
    for ordinal, rec in enumerate(load_manifest_lazy(rec_path)):
        if ordinal >= stop:
            break
        if ordinal < start:
            continue
        for s in rec.sources:
            if s.type == "file" and not Path(s.source).is_file():
                count += 1
                if len(messages) < limit:
                    messages.append(f"recording {rec.id}: audio file {s.source} does not exist")
    return messages, count


def stream_cuts(
    rec_path: Path,
    sup_path: Path,
    part: str,
    mono_dir: Path,
    start: int = 0,
    stop: int | None = None,
    stats: StreamStats | None = None,
) -> Iterator[Cut]:
    """Cuts (16 kHz mono, one per supervision) of the recordings with ordinals ``[start, stop)``.

    ``stats``, when given, is updated as the cuts are drawn.
    """
    stats = stats if stats is not None else StreamStats()
    for ordinal, rec, sups in _recordings_with_supervisions(rec_path, sup_path, part):
        if stop is not None and ordinal >= stop:
            return
        if ordinal < start or not sups:
            continue
        stats.num_recordings += 1
        if rec.num_channels > 1:
            rec = downmix_recording(rec, mono_dir)
            sups = [dataclasses.replace(s, channel=0) for s in sups]
            stats.downmixed += 1
        cuts = CutSet.from_manifests(
            recordings=RecordingSet.from_recordings([rec]),
            supervisions=SupervisionSet.from_segments(sups),
        ).trim_to_supervisions(keep_overlapping=False)
        for cut in cuts:
            if cut.sampling_rate != SAMPLING_RATE:
                stats.resampled_rates[cut.sampling_rate] += 1
                stats.num_resampled += 1
                cut = cut.resample(SAMPLING_RATE)
            yield cut
