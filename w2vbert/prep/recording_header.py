"""Recordings from audio file headers, and the audio that stage 2 will have to convert.

:func:`read_recording` is Lhotse's ``Recording.from_file`` (one header read per file) with its
failures turned into messages naming the file; :class:`AudioDecisions` counts the recordings
that are valid but not 16 kHz mono, which stage 2 resamples or downmixes, for one log line each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import Recording

from w2vbert.prep.corpus_problems import CorpusError

logger = logging.getLogger(__name__)

TARGET_SAMPLING_RATE = 16000


def read_recording(path: Path, recording_id: str) -> Recording:
    """``Recording.from_file(path, recording_id=recording_id)``; raises CorpusError naming
    ``path`` when the file cannot be read, is corrupt or holds no samples."""
    try:
        recording = Recording.from_file(path, recording_id=recording_id)
    except Exception as e:  # the audio backends raise several types for corrupt files
        raise CorpusError(f"{path}: unreadable or corrupt audio ({e})") from e
    if recording.num_samples == 0:
        raise CorpusError(f"{path}: empty audio (0 samples)")
    return recording


@dataclass
class AudioDecisions:
    """Recordings of a part that are not 16 kHz or not mono: counts, rates and a first example."""

    other_rate: int = 0
    rates: set[int] = field(default_factory=set)
    other_rate_example: str = ""
    multi_channel: int = 0
    multi_channel_example: tuple[str, int] = ("", 0)

    def add(self, recording: Recording) -> None:
        """Counts ``recording`` if stage 2 will resample or downmix it."""
        if recording.sampling_rate != TARGET_SAMPLING_RATE:
            if not self.other_rate:
                self.other_rate_example = recording.id
            self.other_rate += 1
            self.rates.add(recording.sampling_rate)
        if recording.num_channels > 1:
            if not self.multi_channel:
                self.multi_channel_example = (recording.id, recording.num_channels)
            self.multi_channel += 1

    def log(self, part: str) -> None:
        """Logs the recordings that stage 2 will resample or downmix."""
        if self.other_rate:
            logger.warning(
                "Part %s: %d recording(s) are not %d Hz (rates %s; e.g. %s); compute_fbank "
                "resamples them to %d Hz",
                part, self.other_rate, TARGET_SAMPLING_RATE, sorted(self.rates),
                self.other_rate_example, TARGET_SAMPLING_RATE,
            )  # fmt: skip
        if self.multi_channel:
            logger.warning(
                "Part %s: %d recording(s) have more than one channel (e.g. %s with %d); "
                "compute_fbank downmixes them to mono (mean of the channels)",
                part, self.multi_channel, *self.multi_channel_example,
            )  # fmt: skip
