"""LibriSpeech layout parts: ``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` (lines
``<utterance id> <TRANSCRIPT>``) beside ``<spk>-<chapter>-<utt>.flac``, one directory at a time.

The manifests equal those of ``lhotse.recipes.prepare_librispeech`` (same order, ids, sources,
durations and supervision fields; word alignments, which the LibriSpeech download lacks, are not
read), but are produced one utterance at a time instead of as whole sets in memory. The audio of
utterance ``a-b-c`` is ``<part>/a/b/a-b-c.flac``, which must be the directory of its transcript.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from lhotse import Recording, SupervisionSegment

from w2vbert.prep.corpus_problems import Problems
from w2vbert.prep.corpus_walk import walk_directories
from w2vbert.prep.recording_header import read_recording

logger = logging.getLogger(__name__)

TRANSCRIPT_SUFFIX = ".trans.txt"
_NORMALISED = re.compile(r"[A-Z']+( [A-Z']+)*")


def audio_path(part_dir: Path, utt_id: str) -> Path:
    """Where the audio of utterance ``utt_id`` is (``a-b-c`` -> ``part_dir/a/b/a-b-c.flac``)."""
    return Path(part_dir) / Path(utt_id.replace("-", "/")).parent / f"{utt_id}.flac"


def transcript_lines(trans: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a ``.trans.txt`` file, read as Lhotse's recipe reads it."""
    with open(trans, encoding="utf-8", errors="replace") as f:
        yield from enumerate(f, start=1)


def check_librispeech_part(part_dir: Path) -> Problems:
    """Problems of a LibriSpeech-layout part (transcripts vs audio files), directory by directory;
    logs a count of transcripts that are not LibriSpeech-normalised."""
    part_dir = Path(part_dir)
    problems = Problems()
    unnormalised, examples = 0, []
    for directory, names in walk_directories(part_dir):
        ids: dict[str, str] = {}  # utterance id -> where; the ids of one directory only
        for name in names:
            if not name.endswith(TRANSCRIPT_SUFFIX):
                continue
            trans = directory / name
            for lineno, line in transcript_lines(trans):
                where = f"{trans}:{lineno}"
                fields = line.split(maxsplit=1)
                if not fields:
                    problems.add(f"{where}: blank line")
                    continue
                utt_id = fields[0]
                text = fields[1].strip() if len(fields) > 1 else ""
                if not text:
                    problems.add(f"{where}: empty transcript for utterance {utt_id}")
                elif not text.isascii():
                    problems.add(f"{where}: non-ASCII transcript for utterance {utt_id}: {text!r}")
                elif not _NORMALISED.fullmatch(text):
                    unnormalised += 1
                    if len(examples) < 3:
                        examples.append(f"{utt_id}: {text!r}")
                if utt_id in ids:
                    problems.add(f"{where}: utterance id {utt_id} repeats {ids[utt_id]}")
                ids[utt_id] = where
                audio = audio_path(part_dir, utt_id)
                if audio.parent != directory:
                    problems.add(
                        f"{where}: utterance {utt_id} belongs in {audio.parent}, not beside {trans}"
                    )
                elif not audio.is_file():
                    problems.add(f"{where}: transcript line of {utt_id} has no audio file {audio}")
        for name in names:
            if name.endswith(".flac") and name[: -len(".flac")] not in ids:
                problems.add(
                    f"{directory / name}: audio file without a transcript line in any *.trans.txt"
                )
    if unnormalised:
        logger.warning(
            "%s: %d transcript(s) have characters other than A-Z, apostrophe and space "
            "(LibriSpeech's normalisation). They are kept as written: stage 3's BPE model "
            "learns pieces for those characters too (lower case apart from upper case), and "
            "the WER compares them as written; normalise the transcripts if that is not "
            "wanted. E.g. %s",
            part_dir, unnormalised, "; ".join(examples),
        )  # fmt: skip
    return problems


def librispeech_items(corpus_dir: Path, part: str) -> Iterator[tuple[Path, str]]:
    """``(audio path, transcript line)`` of every utterance of a checked part, in Lhotse's order
    (transcript files as ``rglob`` finds them, lines in file order)."""
    part_dir = Path(corpus_dir) / part
    for directory, names in walk_directories(part_dir):
        for name in names:
            if name.endswith(TRANSCRIPT_SUFFIX):
                for _, line in transcript_lines(directory / name):
                    utt_id = line.split(maxsplit=1)[0]
                    yield audio_path(part_dir, utt_id), line


def read_librispeech_item(item: tuple[Path, str]) -> tuple[Recording, list[SupervisionSegment]]:
    """The recording and supervision of one utterance, as Lhotse's LibriSpeech recipe makes them;
    raises CorpusError naming the audio file when it cannot be read."""
    path, line = item
    utt_id, text = line.strip().split(maxsplit=1)
    recording = read_recording(path.resolve(), utt_id)  # absolute, as Libri-Light's
    segment = SupervisionSegment(
        id=utt_id,
        recording_id=utt_id,
        start=0.0,
        duration=recording.duration,
        channel=0,
        language="English",
        speaker=re.sub(r"-.*", r"", utt_id),
        text=text.strip(),
        alignment=None,
    )
    return recording, [segment]
