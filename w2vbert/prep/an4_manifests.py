"""``prepare_an4``: Lhotse manifests of CMU's AN4 (Lhotse has no AN4 recipe), with a dev set and a
few-label subset carved out of its training set by whole speakers.

Parts (``{prefix}_{recordings,supervisions}_{part}.jsonl.gz``):

- ``train``: AN4's training set less ``dev`` (848 of 948 utterances with the defaults);
- ``dev``: ``num_dev`` utterances of whole training speakers (ESPnet's ``train_dev`` is the first
  100 utterances in speaker order, cutting one speaker in two; here whole speakers, the first in
  sorted order whose counts add up to exactly ``num_dev`` when any do, else the nearest total);
- ``test``: AN4's test set (130 utterances, 10 speakers not in training);
- ``train-1of{N}``: 1/N of ``train``'s utterances, whole speakers drawn in a seeded order (a
  few-label fine-tuning set, as Libri-Light's 10 min / 1 h splits).

The headerless big-endian audio is converted once, losslessly, to FLAC under ``audio_dir`` (one
file per utterance, ``<speaker>/<id>.flac``), which Lhotse, soundfile and the sherpa-onnx check
all read; the recordings point there. A finished ``audio_dir`` is reused. Supervisions carry the
transcript with AN4's ``<s>``/``</s>`` markers and ``(utterance-id)`` stripped.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
from lhotse import (
    AudioSource,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
    validate_recordings_and_supervisions,
)

from w2vbert.prep.an4_layout import SAMPLING_RATE, An4Utterance, read_an4_set, read_raw
from w2vbert.prep.corpus_problems import CorpusError, Problems
from w2vbert.prep.corpus_walk import ordered_map
from w2vbert.prep.manifests import manifest_paths
from w2vbert.util.atomic import atomic_directory, atomic_output

logger = logging.getLogger(__name__)

_DONE = ".converted"  # in audio_dir: the utterance count; the directory is complete


def choose_speakers(counts: dict[str, int], target: int, order: Sequence[str]) -> list[str]:
    """Whole speakers whose utterance ``counts`` add up to ``target`` (the nearest non-zero total
    when none do; ties: the smaller): of the subsets with that total, the first in ``order``
    (each speaker taken if the rest of the total can still be made of the speakers after it)."""
    if target < 1:
        raise ValueError(f"`target` must be >= 1, but is {target} instead.")
    # reachable[i]: the totals that speakers order[i:] can make
    reachable: list[set[int]] = [{0}]
    for spk in reversed(order):
        reachable.insert(0, reachable[0] | {t + counts[spk] for t in reachable[0]})
    total = min((t for t in reachable[0] if t > 0), key=lambda t: (abs(t - target), t))
    chosen = []
    for i, spk in enumerate(order):
        if total - counts[spk] in reachable[i + 1]:
            chosen.append(spk)
            total -= counts[spk]
    return chosen


def split_train(
    utterances: list[An4Utterance], num_dev: int, subset_denominator: int, seed: int = 0
) -> dict[str, list[An4Utterance]]:
    """``{"train", "dev", "train-1of<N>"}`` of AN4's training utterances, by whole speakers."""
    counts = Counter(u.speaker for u in utterances)
    if num_dev >= len(utterances):
        raise ValueError(f"`num_dev` ({num_dev}) must be below the {len(utterances)} training utterances.")
    dev = set(choose_speakers(counts, num_dev, sorted(counts)))
    rest = {s: n for s, n in counts.items() if s not in dev}
    order = sorted(rest)
    random.Random(seed).shuffle(order)
    target = max(1, round(sum(rest.values()) / subset_denominator))
    subset = set(choose_speakers(rest, target, order))
    return {
        "train": [u for u in utterances if u.speaker not in dev],
        "dev": [u for u in utterances if u.speaker in dev],
        f"train-1of{subset_denominator}": [u for u in utterances if u.speaker in subset],
    }


def _convert(item: tuple[An4Utterance, Path]) -> int | str:
    """Writes the FLAC of one utterance; its sample count, or the problem's message."""
    utterance, flac = item
    try:
        samples = read_raw(utterance.audio)
    except (CorpusError, OSError) as e:
        return str(e)
    flac.parent.mkdir(parents=True, exist_ok=True)
    sf.write(flac, samples, SAMPLING_RATE, format="FLAC", subtype="PCM_16")
    return len(samples)


def convert_audio(
    utterances: list[An4Utterance], audio_dir: Path, num_jobs: int = 1
) -> dict[str, int]:
    """FLAC copies of every utterance's raw audio in ``audio_dir`` (written whole or not at all;
    an existing complete one is reused); returns ``{utterance id: samples}``."""
    audio_dir = Path(audio_dir)
    if (audio_dir / _DONE).is_file() and int((audio_dir / _DONE).read_text()) == len(utterances):
        return {u.id: sf.info(flac_path(audio_dir, u)).frames for u in utterances}
    problems, samples = Problems(), {}
    with atomic_directory(audio_dir) as tmp:
        items = [(u, flac_path(tmp, u)) for u in utterances]
        for u, result in zip(utterances, ordered_map(_convert, items, num_jobs)):
            if isinstance(result, str):
                problems.add(result)
            else:
                samples[u.id] = result
        problems.raise_if_any(f"AN4 audio -> {audio_dir}")
        (tmp / _DONE).write_text(str(len(utterances)))
    return samples


def flac_path(audio_dir: Path, utterance: An4Utterance) -> Path:
    """Where the FLAC copy of ``utterance`` is: ``audio_dir/<speaker>/<id>.flac``."""
    return Path(audio_dir) / utterance.speaker / f"{utterance.id}.flac"


def _manifests(
    utterances: list[An4Utterance], samples: dict[str, int], audio_dir: Path
) -> tuple[RecordingSet, SupervisionSet]:
    recordings, supervisions = [], []
    for u in utterances:
        n = samples[u.id]
        source = AudioSource(type="file", channels=[0], source=str(flac_path(audio_dir, u)))
        rec = Recording(id=u.id, sources=[source], sampling_rate=SAMPLING_RATE, num_samples=n,
                        duration=n / SAMPLING_RATE)  # fmt: skip
        recordings.append(rec)
        supervisions.append(
            SupervisionSegment(id=u.id, recording_id=u.id, start=0.0, duration=rec.duration,
                               channel=0, language="English", speaker=u.speaker, text=u.text)
        )  # fmt: skip
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def prepare_an4(
    corpus_dir: Path,
    output_dir: Path | None = None,
    *,
    audio_dir: Path | None = None,
    prefix: str = "an4",
    num_dev: int = 100,
    subset_denominator: int = 8,
    seed: int = 0,
    num_jobs: int = 1,
) -> dict[str, dict[str, RecordingSet | SupervisionSet]]:
    """Manifests of AN4's parts (see the module docstring), Lhotse-style:
    ``{part: {"recordings": RecordingSet, "supervisions": SupervisionSet}}``, also written to
    ``output_dir`` when given.

    ``corpus_dir``: the ``an4`` directory (``etc/``, ``wav/``). ``audio_dir``: where the FLAC
    copies go (default ``<output_dir>/an4_flac``, or ``<corpus_dir>/flac`` without an output
    directory). Raises CorpusError listing every problem of the corpus (files and lines named).
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(f"AN4 directory {corpus_dir} does not exist")
    if subset_denominator < 2:
        raise ValueError(f"`subset_denominator` must be >= 2, but is {subset_denominator} instead.")
    problems = Problems()
    sets = {name: read_an4_set(corpus_dir, name, problems) for name in ("train", "test")}
    problems.raise_if_any(f"AN4 corpus {corpus_dir}")
    audio_dir = Path(audio_dir or (Path(output_dir) / "an4_flac" if output_dir else corpus_dir / "flac"))
    samples = convert_audio(sets["train"] + sets["test"], audio_dir, num_jobs)
    parts = split_train(sets["train"], num_dev, subset_denominator, seed)
    parts["test"] = sets["test"]
    out: dict[str, dict[str, RecordingSet | SupervisionSet]] = {}
    for part, utterances in parts.items():
        recordings, supervisions = _manifests(utterances, samples, audio_dir)
        validate_recordings_and_supervisions(recordings, supervisions)
        out[part] = {"recordings": recordings, "supervisions": supervisions}
        seconds = sum(r.duration for r in recordings)
        logger.info(
            "Part %s: %d utterances (%.1f min), %d speakers", part, len(recordings), seconds / 60,
            len({s.speaker for s in supervisions}),
        )  # fmt: skip
        if output_dir is not None:
            rec_path, sup_path = manifest_paths(output_dir, prefix, part)
            with atomic_output(sup_path) as tmp_sup, atomic_output(rec_path) as tmp_rec:
                recordings.to_file(tmp_rec)
                supervisions.to_file(tmp_sup)
    return out

