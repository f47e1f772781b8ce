"""Stage 1: Lhotse recordings/supervisions manifests of LibriSpeech- and Libri-Light-layout parts.

The parsing is Lhotse's (``lhotse.recipes.prepare_librispeech``; for Libri-Light layout parts
the per-subset function behind ``prepare_librilight``, which itself only walks the part names
small/medium/large). Around it this module adds what those functions do not do:

- a check of the layout before parsing, so that bad input fails with a message naming every
  offending file (Lhotse silently skips transcript lines without audio, ignores audio without
  transcript and crashes without a file name on an empty transcript line);
- decisions on audio that is valid but not what the recipe expects, logged here and applied in
  stage 2: a sampling rate other than 16 kHz is resampled, multi-channel audio is downmixed
  to mono (the mean of the channels);
- optionally, for Libri-Light layout parts, the VAD segments of each recording joined into
  segments of at most ``max_cut_duration`` seconds (:mod:`w2vbert.prep.segmentation`);
- write-then-rename output, named ``{prefix}_{recordings,supervisions}_{part}.jsonl.gz``.

Bad input and what happens (every case raises :class:`CorpusError`, listing all files):
transcript line without its audio file, audio without a transcript line, empty transcript,
non-ASCII transcript, blank line or duplicate utterance id in a ``.trans.txt``, unreadable,
corrupt or empty (0 samples) audio, Libri-Light audio without its JSON or a JSON without
``speaker`` / valid ``voice_activity``, a JSON without audio.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

import soundfile as sf
from lhotse import (
    RecordingSet,
    SupervisionSet,
    load_manifest_lazy,
    validate_recordings_and_supervisions,
)

from w2vbert.util.atomic import atomic_output

logger = logging.getLogger(__name__)

LIBRISPEECH = "librispeech"
LIBRILIGHT = "librilight"
TARGET_SAMPLING_RATE = 16000
_MAX_LISTED = 20


class CorpusError(ValueError):
    """The input corpus is malformed; the message names the offending files."""


def _raise_problems(what: str, problems: list[str]) -> None:
    if not problems:
        return
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise CorpusError(f"{what}: {len(problems)} problem(s):\n  {listed}{more}")


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


_NORMALISED = re.compile(r"[A-Z']+( [A-Z']+)*")


def check_librispeech_part(part_dir: Path) -> list[str]:
    """Problems of a LibriSpeech-layout part (transcripts vs audio files); [] if none."""
    part_dir = Path(part_dir)
    problems: list[str] = []
    expected: set[Path] = set()
    ids: dict[str, str] = {}
    unnormalised: list[str] = []
    for trans in sorted(part_dir.rglob("*.trans.txt")):
        text_lines = trans.read_bytes().decode("utf-8", errors="replace").splitlines()
        for lineno, line in enumerate(text_lines, start=1):
            where = f"{trans}:{lineno}"
            fields = line.split(maxsplit=1)
            if not fields:
                problems.append(f"{where}: blank line")
                continue
            utt_id = fields[0]
            text = fields[1].strip() if len(fields) > 1 else ""
            if not text:
                problems.append(f"{where}: empty transcript for utterance {utt_id}")
            elif not text.isascii():
                problems.append(f"{where}: non-ASCII transcript for utterance {utt_id}: {text!r}")
            elif not _NORMALISED.fullmatch(text):
                unnormalised.append(f"{utt_id}: {text!r}")
            if utt_id in ids:
                problems.append(f"{where}: utterance id {utt_id} repeats {ids[utt_id]}")
            ids[utt_id] = where
            rel = Path(utt_id.replace("-", "/")).parent / f"{utt_id}.flac"
            if not (part_dir / rel).is_file():
                problems.append(
                    f"{where}: transcript line of {utt_id} has no audio file {part_dir / rel}"
                )
            expected.add(rel)
    for audio in sorted(part_dir.rglob("*.flac")):
        if audio.relative_to(part_dir) not in expected:
            problems.append(f"{audio}: audio file without a transcript line in any *.trans.txt")
    if unnormalised:
        logger.warning(
            "%s: %d transcript(s) have characters other than A-Z, apostrophe and space "
            "(LibriSpeech's normalisation; a BPE model trained on such text maps the others to "
            "<unk>), e.g. %s",
            part_dir, len(unnormalised), "; ".join(unnormalised[:3]),
        )  # fmt: skip
    return problems


def check_librilight_part(part_dir: Path) -> list[str]:
    """Problems of a Libri-Light-layout part (audio vs JSON metadata); [] if none."""
    part_dir = Path(part_dir)
    problems: list[str] = []
    for audio in sorted(part_dir.rglob("*.flac")):
        meta_path = audio.with_suffix(".json")
        if "flac" in str(audio.resolve().parent):
            problems.append(
                f"{audio}: Lhotse's Libri-Light reader cannot handle 'flac' in a directory name"
            )
        if not meta_path.is_file():
            problems.append(f"{audio}: audio file without its Libri-Light JSON {meta_path}")
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{meta_path}: not valid JSON ({e})")
            continue
        if not isinstance(meta, dict) or "speaker" not in meta:
            problems.append(f"{meta_path}: no 'speaker' field")
        segments = meta.get("voice_activity") if isinstance(meta, dict) else None
        if not isinstance(segments, list) or not segments:
            problems.append(
                f"{meta_path}: 'voice_activity' must be a non-empty list of [start, end]"
            )
            continue
        for seg in segments:
            ok = (
                isinstance(seg, list)
                and len(seg) == 2
                and all(isinstance(x, (int, float)) for x in seg)
            )
            if not ok or not 0 <= seg[0] < seg[1]:
                problems.append(
                    f"{meta_path}: voice_activity segment {seg!r} is not [start, end] with 0 <= start < end"
                )
                break
    for meta_path in sorted(part_dir.rglob("*.json")):
        if not meta_path.with_suffix(".flac").is_file():
            problems.append(f"{meta_path}: Libri-Light JSON without its audio file")
    return problems


def find_bad_audio(paths: Sequence[Path]) -> list[str]:
    """Problems of audio files that cannot be read or hold no samples; [] if none."""
    problems = []
    for path in paths:
        try:
            info = sf.info(str(path))
        except Exception as e:  # soundfile raises several types for corrupt files
            problems.append(f"{path}: unreadable or corrupt audio ({e})")
            continue
        if info.frames == 0:
            problems.append(f"{path}: empty audio (0 samples)")
    return problems


def _log_audio_decisions(part: str, recordings: RecordingSet) -> None:
    """Logs the recordings that stage 2 will resample or downmix."""
    other_rate = [r for r in recordings if r.sampling_rate != TARGET_SAMPLING_RATE]
    multi = [r for r in recordings if r.num_channels > 1]
    if other_rate:
        rates = sorted({r.sampling_rate for r in other_rate})
        logger.warning(
            "Part %s: %d recording(s) are not %d Hz (rates %s; e.g. %s); compute_fbank resamples "
            "them to %d Hz",
            part,
            len(other_rate),
            TARGET_SAMPLING_RATE,
            rates,
            other_rate[0].id,
            TARGET_SAMPLING_RATE,
        )
    if multi:
        logger.warning(
            "Part %s: %d recording(s) have more than one channel (e.g. %s with %d); compute_fbank "
            "downmixes them to mono (mean of the channels)",
            part,
            len(multi),
            multi[0].id,
            multi[0].num_channels,
        )


def prepare_part(
    corpus_dir: Path, part: str, num_jobs: int = 1, max_cut_duration: float | None = None
) -> tuple[RecordingSet, SupervisionSet]:
    """Checks and parses one part of ``corpus_dir`` (layout detected) into validated manifests.

    ``max_cut_duration``: for a Libri-Light layout part, its supervisions are the VAD segments
    joined into segments of at most this many seconds (None: one per VAD segment).
    """
    from lhotse.recipes import prepare_librispeech
    from lhotse.recipes.librilight import _prepare_subset

    corpus_dir = Path(corpus_dir)
    part_dir = corpus_dir / part
    layout = detect_layout(part_dir)
    check = check_librispeech_part if layout == LIBRISPEECH else check_librilight_part
    _raise_problems(f"Part {part} ({layout} layout) in {corpus_dir}", check(part_dir))
    logger.info("Part %s: %s layout, parsing with Lhotse", part, layout)
    try:
        if layout == LIBRISPEECH:
            manifests = prepare_librispeech(
                corpus_dir, dataset_parts=[part], output_dir=None, num_jobs=num_jobs
            )
            recordings = manifests[part]["recordings"]
            supervisions = manifests[part]["supervisions"]
        else:
            recordings, supervisions = _prepare_subset(part, corpus_dir, num_jobs)
            if max_cut_duration is not None:
                supervisions = _join_segments(part, supervisions, max_cut_duration)
    except CorpusError:
        raise
    except Exception as e:
        # Find the culprit among the audio files only now: a header read per file is not free.
        bad = find_bad_audio(sorted(part_dir.rglob("*.flac")))
        _raise_problems(f"Part {part} in {corpus_dir}", bad)
        raise CorpusError(f"Part {part} in {corpus_dir}: Lhotse could not parse it: {e}") from e
    _raise_problems(
        f"Part {part} in {corpus_dir}",
        [
            f"{r.sources[0].source}: empty audio (0 samples)"
            for r in recordings
            if r.num_samples == 0
        ],
    )
    validate_recordings_and_supervisions(recordings, supervisions)
    _log_audio_decisions(part, recordings)
    return recordings, supervisions


def _join_segments(part: str, vad: SupervisionSet, max_cut_duration: float) -> SupervisionSet:
    """The VAD segments of each recording joined into segments of at most ``max_cut_duration`` s."""
    from w2vbert.prep.segmentation import join_recording_segments

    by_recording = sorted(vad, key=lambda s: (s.recording_id, s.start))
    try:
        joined = SupervisionSet.from_segments(
            join_recording_segments(by_recording, max_cut_duration)
        )
    except ValueError as e:
        raise CorpusError(f"Part {part}: {e}") from e
    seconds = sum(s.duration for s in joined)
    logger.info(
        "Part %s: %d VAD segments joined into %d segments of at most %g s (mean %.1f s)",
        part, len(vad), len(joined), max_cut_duration, seconds / max(len(joined), 1),
    )  # fmt: skip
    return joined


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
    :func:`prepare_part`). Returns ``{part: (recordings_path, supervisions_path)}``.
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
        recordings, supervisions = prepare_part(part_dirs[part], part, num_jobs, max_cut_duration)
        with atomic_output(sup_path) as tmp_sup:  # renamed last: its presence means done
            supervisions.to_file(tmp_sup)
            with atomic_output(rec_path) as tmp_rec:
                recordings.to_file(tmp_rec)
        hours = sum(r.duration for r in recordings) / 3600.0
        logger.info(
            "Part %s: %d recordings (%.3f h), %d supervisions, %d speakers -> %s",
            part,
            len(recordings),
            hours,
            len(supervisions),
            len({s.speaker for s in supervisions}),
            rec_path,
        )
    return written
