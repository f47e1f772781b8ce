"""Long-recording segmentation: Libri-Light voice-activity segments joined into training segments.

A Libri-Light recording (often an hour long) comes with VAD segments of a few seconds each.
Libri-Light's own ``cut_by_vad`` joins consecutive segments into pieces of up to a target
length; so does :func:`join_vad_segments`, greedily, per recording:

- consecutive VAD segments (sorted by start) are joined while the joined segment, the pauses
  between them included, stays within ``max_duration`` seconds;
- a VAD segment is never split, unless it alone is longer than ``max_duration``: then it is cut
  into the fewest equal windows of at most ``max_duration`` seconds.

The joined segments replace the VAD segments as the part's supervisions (ids
``<recording id>_<n>``, numbered from 0 per recording, as Lhotse's own Libri-Light ids), so that
stage 2, which trims every recording to its supervisions, gives one cut per joined segment.
Each records the setting in ``custom["max_cut_duration"]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterable, Iterator, Sequence

from lhotse import SupervisionSegment
from lhotse.utils import add_durations

SAMPLING_RATE = 16000  # durations are rounded to whole samples at this rate, as Lhotse's reader
_EPS = 1e-6


def _segment(
    first: SupervisionSegment, index: int, start: float, end: float, max_duration: float
) -> SupervisionSegment:
    """A copy of ``first`` spanning ``start``..``end`` s, with id ``<recording id>_<index>``."""
    return dataclasses.replace(
        first,
        id=f"{first.recording_id}_{index}",
        start=start,
        # whole samples, never over the maximum (stage 2 drops longer cuts)
        duration=min(add_durations(end, -start, sampling_rate=SAMPLING_RATE), max_duration),
        custom={**(first.custom or {}), "max_cut_duration": max_duration},
    )


def join_vad_segments(
    segments: Sequence[SupervisionSegment], max_duration: float
) -> list[SupervisionSegment]:
    """The VAD ``segments`` of one recording joined greedily into segments of at most
    ``max_duration`` seconds (pauses included), in time order; see the module docstring.

    Raises ValueError when ``max_duration`` is not positive or the segments belong to several
    recordings.
    """
    if not max_duration > 0:
        raise ValueError(f"`max_duration` must be > 0, but is {max_duration} instead.")
    recordings = {s.recording_id for s in segments}
    if len(recordings) > 1:
        raise ValueError(
            f"join_vad_segments takes the segments of one recording, but got {sorted(recordings)}."
        )
    spans: list[tuple[SupervisionSegment, float, float]] = []  # (first VAD segment, start, end)
    current: tuple[SupervisionSegment, float, float] | None = None  # the segment being joined
    for seg in sorted(segments, key=lambda s: (s.start, s.end)):
        if seg.duration > max_duration + _EPS:  # alone too long: equal windows, nothing joined
            if current is not None:
                spans.append(current)
                current = None
            num = math.ceil(seg.duration / max_duration - _EPS)
            bounds = [seg.start + k * seg.duration / num for k in range(num)] + [seg.end]
            spans.extend((seg, a, b) for a, b in zip(bounds, bounds[1:]))
        elif current is not None and max(current[2], seg.end) - current[1] <= max_duration + _EPS:
            current = (current[0], current[1], max(current[2], seg.end))
        else:
            if current is not None:
                spans.append(current)
            current = (seg, seg.start, seg.end)
    if current is not None:
        spans.append(current)
    return [_segment(first, k, a, b, max_duration) for k, (first, a, b) in enumerate(spans)]


def join_recording_segments(
    supervisions: Iterable[SupervisionSegment], max_duration: float
) -> Iterator[SupervisionSegment]:
    """:func:`join_vad_segments` over every recording of ``supervisions``, lazily; each
    recording's segments must come together (as Lhotse's Libri-Light reader writes them)."""
    seen: set[str] = set()
    for recording_id, group in itertools.groupby(supervisions, key=lambda s: s.recording_id):
        if recording_id in seen:
            raise ValueError(
                f"Recording {recording_id}: its VAD segments are not consecutive in the "
                "supervisions (sort them by recording first)."
            )
        seen.add(recording_id)
        yield from join_vad_segments(list(group), max_duration)
