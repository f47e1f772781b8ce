"""Stage 1: Lhotse recordings/supervisions manifests of LibriSpeech- and Libri-Light-layout parts.

Each part is read directory by directory and its manifests are written one recording at a time,
so the memory taken does not grow with the size of the corpus. The manifests equal those of
Lhotse's recipes (``lhotse.recipes.prepare_librispeech``; for Libri-Light layout parts the reader
behind ``prepare_librilight``, which itself only walks the part names small/medium/large): the
same order, ids, sources, durations and supervision fields, supervisions that run past the end
of their recording trimmed as Lhotse's ``fix_manifests`` does, each recording validated with
Lhotse's validator (:mod:`w2vbert.prep.librispeech_layout`, :mod:`w2vbert.prep.librilight_layout`).
Around that this module adds:

- a check of the layout before parsing, so that bad input fails with a message naming the
  offending files (all counted, the first 20 listed); Lhotse silently skips transcript lines
  without audio, ignores audio without transcript and crashes without a file name on an empty
  transcript line;
- decisions on audio that is valid but not what the recipe expects, logged here and applied in
  stage 2: a sampling rate other than 16 kHz is resampled, multi-channel audio is downmixed
  to mono (the mean of the channels);
- optionally, for Libri-Light layout parts, the VAD segments of each recording joined into
  segments of at most ``max_cut_duration`` seconds (:mod:`w2vbert.prep.segmentation`);
- write-then-rename output, named ``{prefix}_{recordings,supervisions}_{part}.jsonl.gz``.

Bad input and what happens (every case raises :class:`CorpusError`, naming the files):
transcript line without its audio file, audio without a transcript line, a transcript line whose
audio belongs in another directory, empty transcript, non-ASCII transcript, blank line or
duplicate utterance id in a ``.trans.txt``, unreadable, corrupt or empty (0 samples) audio,
Libri-Light audio without its JSON or a JSON without ``speaker`` / valid ``voice_activity``, a
JSON without audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import (
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
    load_manifest_lazy,
    validate_recordings_and_supervisions,
)
from lhotse.qa import trim_supervisions_to_recordings, validate_recording

from w2vbert.prep.corpus_problems import CorpusError, Problems
from w2vbert.prep.corpus_walk import ordered_map
from w2vbert.prep.librilight_layout import (
    check_librilight_part,
    librilight_items,
    read_librilight_item,
)
from w2vbert.prep.librispeech_layout import (
    check_librispeech_part,
    librispeech_items,
    read_librispeech_item,
)
from w2vbert.prep.recording_header import AudioDecisions
from w2vbert.prep.segmentation import join_vad_segments
from w2vbert.util.atomic import atomic_output

logger = logging.getLogger(__name__)

LIBRISPEECH = "librispeech"
LIBRILIGHT = "librilight"

__all__ = ["CorpusError", "check_librilight_part", "check_librispeech_part", "detect_layout",
           "find_parts", "manifest_paths", "prepare_manifests", "write_part"]  # fmt: skip


def detect_layout(part_dir: Path) -> str:
    """``librispeech`` if ``part_dir`` holds ``<spk>/<chapter>/*.trans.txt``, ``librilight`` if it
    holds ``<spk>/<book>/*.json``; raises CorpusError otherwise."""
    part_dir = Path(part_dir)
    if not part_dir.is_dir():
        raise CorpusError(f"Part directory {part_dir} does not exist")
    has_trans = any(part_dir.glob("*/*/*.trans.txt"))
    has_json = any(part_dir.glob("*/*/*.json"))
    if has_trans and has_json:
        raise CorpusError(
            f"{part_dir} mixes LibriSpeech (*.trans.txt) and Libri-Light (*.json) layouts"
        )
    if has_trans:
        return LIBRISPEECH
    if has_json:
        return LIBRILIGHT
    raise CorpusError(
        f"{part_dir} has neither the LibriSpeech layout (<spk>/<chapter>/<spk>-<chapter>.trans.txt "
        "beside the .flac files) nor the Libri-Light layout (<spk>/<book>/<name>.flac + <name>.json)"
    )


def find_parts(corpus_dir: Path) -> list[str]:
    """Sub-directories of ``corpus_dir`` with a LibriSpeech or Libri-Light layout, sorted."""
    parts = []
    for sub in sorted(p for p in Path(corpus_dir).iterdir() if p.is_dir()):
        try:
            detect_layout(sub)
        except CorpusError as e:  # e.g. an unlabelled part whose download failed: say so loudly
            logger.warning("Ignoring %s: not a LibriSpeech/Libri-Light part (%s)", sub, e)
            continue
        parts.append(sub.name)
    return parts


@dataclass
class PartSummary:
    """What was written for a part (for the log)."""

    num_recordings: int = 0
    seconds: float = 0.0
    num_supervisions: int = 0
    speakers: set = field(default_factory=set)
    num_vad_segments: int = 0
    supervision_seconds: float = 0.0
    removed: int = 0  # supervisions starting after the end of their recording
    trimmed: int = 0  # supervisions running past it, trimmed to it


class _NamedWriter:
    """A Lhotse manifest writer whose OSErrors that name no file (a full disk) name its file."""

    def __init__(self, manifest_class: type, path: Path) -> None:
        self.path = Path(path)
        self.writer = manifest_class.open_writer(self.path)

    def _named(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as e:
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e

    def write(self, item: object) -> None:
        self._named(lambda: self.writer.write(item))

    def close(self) -> None:
        self._named(self.writer.close)


_Item = tuple[Path, str]
_Reader = Callable[[_Item], tuple[Recording, list[SupervisionSegment]]]


def _read_or_problem(read: _Reader) -> Callable[[_Item], tuple | str]:
    """``read`` returning the CorpusError's message instead of raising it."""

    def run(item: _Item) -> tuple | str:
        try:
            return read(item)
        except CorpusError as e:
            return str(e)

    return run


def _fixed(
    recording: Recording, segments: list[SupervisionSegment], summary: PartSummary
) -> list[SupervisionSegment]:
    """``segments`` without those starting after the end of ``recording``, the others trimmed to
    it (Lhotse's ``trim_supervisions_to_recordings``)."""
    end = recording.duration
    summary.removed += sum(1 for s in segments if s.start > end)
    summary.trimmed += sum(1 for s in segments if s.start <= end < s.end)
    return list(trim_supervisions_to_recordings(recording, segments, verbose=False))


def _validated(recording: Recording, segments: list[SupervisionSegment]) -> None:
    """Lhotse's validation of one recording and its supervisions; raises CorpusError naming the
    audio file."""
    try:
        if segments:
            validate_recordings_and_supervisions(recording, SupervisionSet.from_segments(segments))
        else:
            validate_recording(recording)
    except AssertionError as e:
        raise CorpusError(f"{recording.sources[0].source}: {e}") from e


def write_part(
    corpus_dir: Path,
    part: str,
    recordings_path: Path,
    supervisions_path: Path,
    num_jobs: int = 1,
    max_cut_duration: float | None = None,
) -> PartSummary:
    """Checks one part of ``corpus_dir`` (layout detected) and writes its manifests to
    ``recordings_path`` and ``supervisions_path``, one recording at a time.

    Layout problems raise CorpusError before any audio is read; audio problems (unreadable,
    corrupt, empty, invalid) are collected over the whole part and raised at its end.
    ``max_cut_duration``: for a Libri-Light layout part, its supervisions are the VAD segments of
    each recording joined into segments of at most this many seconds (None: one per VAD segment).
    ``num_jobs``: threads reading audio headers.
    """
    corpus_dir = Path(corpus_dir)
    part_dir = corpus_dir / part
    layout = detect_layout(part_dir)
    if layout == LIBRISPEECH:
        check, items, read = check_librispeech_part, librispeech_items, read_librispeech_item
    else:
        check, items, read = check_librilight_part, librilight_items, read_librilight_item
    check(part_dir).raise_if_any(f"Part {part} ({layout} layout) in {corpus_dir}")
    logger.info("Part %s: %s layout, writing its manifests", part, layout)
    join = layout == LIBRILIGHT and max_cut_duration is not None
    problems, summary, decisions = Problems(), PartSummary(), AudioDecisions()
    recordings = _NamedWriter(RecordingSet, recordings_path)
    supervisions = _NamedWriter(SupervisionSet, supervisions_path)
    try:
        for result in ordered_map(_read_or_problem(read), items(corpus_dir, part), num_jobs):
            if isinstance(result, str):
                problems.add(result)
                continue
            recording, segments = result
            segments = _fixed(recording, segments, summary)
            summary.num_vad_segments += len(segments)
            if join:
                segments = join_vad_segments(segments, max_cut_duration)
            try:
                _validated(recording, segments)
            except CorpusError as e:
                problems.add(str(e))
                continue
            if problems:  # the part fails: read on only to name every bad file
                continue
            recordings.write(recording)
            for segment in segments:
                supervisions.write(segment)
            decisions.add(recording)
            summary.num_recordings += 1
            summary.seconds += recording.duration
            summary.num_supervisions += len(segments)
            summary.supervision_seconds += sum(s.duration for s in segments)
            summary.speakers.update(s.speaker for s in segments)
    finally:
        recordings.close()
        supervisions.close()
    problems.raise_if_any(f"Part {part} in {corpus_dir}")
    if not summary.num_supervisions:  # as Lhotse's fix_manifests, which asserts it
        raise CorpusError(f"Part {part} in {corpus_dir}: no recordings with supervisions")
    if summary.removed:
        logger.warning(
            "Part %s: removed %d supervision(s) starting after the end of their recording",
            part, summary.removed,
        )  # fmt: skip
    if summary.trimmed:
        logger.warning(
            "Part %s: trimmed %d supervision(s) to the end of their recording",
            part, summary.trimmed,
        )  # fmt: skip
    if join:
        logger.info(
            "Part %s: %d VAD segments joined into %d segments of at most %g s (mean %.1f s)",
            part, summary.num_vad_segments, summary.num_supervisions, max_cut_duration,
            summary.supervision_seconds / max(summary.num_supervisions, 1),
        )  # fmt: skip
    decisions.log(part)
    return summary


def _segmentation(max_cut_duration: float | None) -> str:
    """How Libri-Light supervisions were made, in the words of the command line."""
    if max_cut_duration is None:
        return "one segment per VAD segment"
    return f"--max-cut-duration {max_cut_duration:g}"


def _check_segmentation(sup_path: Path, part: str, max_cut_duration: float | None) -> None:
    """Raises CorpusError when the existing Libri-Light supervisions ``sup_path`` were joined
    with another ``max_cut_duration`` than asked for now (their cuts would be kept unchanged)."""
    first = next(iter(load_manifest_lazy(sup_path)), None)
    if first is None or first.text is not None:  # a transcribed part: no VAD segments
        return
    made = (first.custom or {}).get("max_cut_duration")
    if made != max_cut_duration:
        raise CorpusError(
            f"Part {part}: {sup_path} was prepared with {_segmentation(made)}, not "
            f"{_segmentation(max_cut_duration)}; re-run with --force (and stage 2 with --force: "
            "its cuts are of the old segments)"
        )


def manifest_paths(output_dir: Path, prefix: str, part: str) -> tuple[Path, Path]:
    """``({prefix}_recordings_{part}.jsonl.gz, {prefix}_supervisions_{part}.jsonl.gz)``."""
    output_dir = Path(output_dir)
    return (
        output_dir / f"{prefix}_recordings_{part}.jsonl.gz",
        output_dir / f"{prefix}_supervisions_{part}.jsonl.gz",
    )


def _part_dirs(corpus_dirs: list[Path], parts: Sequence[str] | None) -> dict[str, Path]:
    """``{part: the corpus directory holding it}`` for ``parts`` (default: every part found)."""
    for d in corpus_dirs:
        if not d.is_dir():
            raise CorpusError(f"Corpus directory {d} does not exist")
    found: dict[str, list[Path]] = {}
    for d in corpus_dirs:
        for part in find_parts(d) if not parts else [p for p in parts if (d / p).is_dir()]:
            found.setdefault(part, []).append(d)
    twice = {part: dirs for part, dirs in found.items() if len(dirs) > 1}
    if twice:
        raise CorpusError(
            "Part(s) in more than one corpus directory: "
            + "; ".join(f"{part} in {' and '.join(map(str, dirs))}" for part, dirs in twice.items())
        )
    where = " ".join(map(str, corpus_dirs))
    if not parts:
        if not found:
            raise CorpusError(f"No LibriSpeech or Libri-Light layout part found in {where}")
        logger.info("Parts found in %s: %s", where, " ".join(sorted(found)))
        return {part: dirs[0] for part, dirs in sorted(found.items())}
    missing = [part for part in parts if part not in found]
    if missing and len(corpus_dirs) > 1:
        raise CorpusError(f"Part(s) {' '.join(missing)} are in none of {where}")
    return {part: found[part][0] if part in found else corpus_dirs[0] for part in parts}


def prepare_manifests(
    corpus_dir: Path | Sequence[Path],
    output_dir: Path,
    prefix: str,
    parts: Sequence[str] | None = None,
    *,
    num_jobs: int = 1,
    force: bool = False,
    max_cut_duration: float | None = None,
) -> dict[str, tuple[Path, Path]]:
    """Writes validated manifests of ``parts`` (default: every part found in ``corpus_dir``).

    ``corpus_dir``: one directory or several (e.g. LibriSpeech and Libri-Light), each part in
    exactly one of them. A part whose two manifests exist is skipped unless ``force`` (an error
    if its VAD segments were joined with another ``max_cut_duration``, see
    :func:`write_part`). Returns ``{part: (recordings_path, supervisions_path)}``.
    """
    if max_cut_duration is not None and not max_cut_duration > 0:
        raise ValueError(f"`max_cut_duration` must be > 0, but is {max_cut_duration} instead.")
    single = isinstance(corpus_dir, (str, Path))
    part_dirs = _part_dirs([Path(corpus_dir)] if single else [Path(d) for d in corpus_dir], parts)
    parts = list(part_dirs)
    written = {}
    for part in parts:
        rec_path, sup_path = manifest_paths(output_dir, prefix, part)
        written[part] = (rec_path, sup_path)
        if rec_path.is_file() and sup_path.is_file() and not force:
            _check_segmentation(sup_path, part, max_cut_duration)
            logger.info("Part %s: %s and %s exist, skipping", part, rec_path, sup_path)
            continue
        with atomic_output(sup_path) as tmp_sup:  # renamed last: its presence means done
            with atomic_output(rec_path) as tmp_rec:
                summary = write_part(
                    part_dirs[part], part, tmp_rec, tmp_sup, num_jobs, max_cut_duration
                )
        logger.info(
            "Part %s: %d recordings (%.3f h), %d supervisions, %d speakers -> %s",
            part,
            summary.num_recordings,
            summary.seconds / 3600.0,
            summary.num_supervisions,
            len(summary.speakers),
            rec_path,
        )
    return written
