"""Stage 2: cuts with stored fbank features, from Lhotse recordings/supervisions manifests.

For each part: ``{prefix}_recordings_{part}.jsonl.gz`` + ``{prefix}_supervisions_{part}.jsonl.gz``
-> cuts (one per supervision: a LibriSpeech utterance or a Libri-Light voice-activity segment)
-> 16 kHz mono (multi-channel audio downmixed to a mono FLAC copy in the feature directory,
other sampling rates resampled when loading; both logged) -> length filter (logged counts)
-> optional speed perturbation 0.9/1.1 -> kaldifeat fbank (:mod:`w2vbert.data.fbank`) stored with
``LilcomChunkyWriter`` in ``{prefix}_feats_{part}/`` -> ``{prefix}_cuts_{part}.jsonl.gz``.
The pre-training cuts file ``{prefix}_cuts_pretrain.jsonl.gz`` is the union of the chosen parts
(speed-perturbed copies left out).

The cuts file is written last, under a temporary name renamed on success, so a killed run never
leaves a finished-looking part; a stale feature directory without its cuts file is removed. A
forced re-run deletes the old cuts file before its features; a failed feature write (e.g. a full
disk) deletes the part's feature directory and raises an OSError naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections import Counter
from concurrent.futures import Executor
from pathlib import Path
from typing import Sequence

import soundfile as sf
from lhotse import (
    CutSet,
    LilcomChunkyWriter,
    Recording,
    RecordingSet,
    SupervisionSet,
    load_manifest_lazy,
)

from w2vbert.data.fbank import SAMPLING_RATE, check_feature_types, fbank_extractor
from w2vbert.data.filters import CutFilter, encoder_cut_filter
from w2vbert.util.atomic import atomic_output, write_error

logger = logging.getLogger(__name__)

PRETRAIN_NAME = "pretrain"
SPEED_FACTORS = (0.9, 1.1)


class FeatureError(ValueError):
    """Manifests or audio unusable for feature extraction; the message names the cut/file."""


def training_cut_filter(min_duration: float = 0.3, max_duration: float = 30.0) -> CutFilter:
    """Stage 2's filter of training parts: cuts of ``min_duration`` to ``max_duration`` seconds
    that give at least one encoder step after the 4x conv front end."""
    return encoder_cut_filter(min_duration=min_duration, max_duration=max_duration)


def find_manifest_parts(manifest_dir: Path, prefix: str) -> list[str]:
    """Parts having a ``{prefix}_supervisions_{part}.jsonl.gz`` in ``manifest_dir``, sorted."""
    head = f"{prefix}_supervisions_"
    parts = sorted(
        p.name[len(head) : -len(".jsonl.gz")] for p in Path(manifest_dir).glob(f"{head}*.jsonl.gz")
    )
    if not parts:
        raise FeatureError(f"No {head}*.jsonl.gz manifests in {manifest_dir}")
    return parts


def untranscribed_parts(manifest_dir: Path, prefix: str, parts: Sequence[str]) -> list[str]:
    """The ``parts`` whose (first) supervision has no text: Libri-Light-style unlabelled parts."""
    found = []
    for part in parts:
        path = Path(manifest_dir) / f"{prefix}_supervisions_{part}.jsonl.gz"
        first = next(iter(load_manifest_lazy(path)), None)
        if first is not None and first.text is None:
            found.append(part)
    return found


def downmix_recording(recording: Recording, out_dir: Path) -> Recording:
    """A mono copy of a multi-channel recording: the mean of its channels, written as 16-bit
    FLAC into ``out_dir`` (Lhotse's own downmix keeps the audio in memory, which a manifest
    cannot store)."""
    samples = recording.load_audio()  # (C, L)
    path = Path(out_dir) / (recording.id.replace("/", "__") + ".flac")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.mean(axis=0), recording.sampling_rate, format="FLAC", subtype="PCM_16")
    return Recording.from_file(path, recording_id=recording.id)


def load_part_cuts(manifest_dir: Path, prefix: str, part: str, mono_dir: Path) -> CutSet:
    """Cuts of one part, one per supervision, 16 kHz mono: multi-channel recordings are
    downmixed into ``mono_dir``, other sampling rates resampled on loading (both logged)."""
    rec_path = Path(manifest_dir) / f"{prefix}_recordings_{part}.jsonl.gz"
    sup_path = Path(manifest_dir) / f"{prefix}_supervisions_{part}.jsonl.gz"
    for path in (rec_path, sup_path):
        if not path.is_file():
            raise FeatureError(f"Part {part}: manifest {path} does not exist (run stage 1 first)")
    recordings = load_manifest_lazy(rec_path).to_eager()
    supervisions = load_manifest_lazy(sup_path).to_eager()
    missing = [
        f"recording {r.id}: audio file {s.source} does not exist"
        for r in recordings
        for s in r.sources
        if s.type == "file" and not Path(s.source).is_file()
    ]
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise FeatureError(f"Part {part} ({rec_path}): " + "; ".join(missing[:10]) + more)

    multi = [r for r in recordings if r.num_channels > 1]
    if multi:
        logger.warning(
            "Part %s: downmixing %d multi-channel recording(s) to mono copies in %s",
            part, len(multi), mono_dir,
        )  # fmt: skip
        mono = {r.id: downmix_recording(r, mono_dir) for r in multi}
        recordings = RecordingSet.from_recordings(mono.get(r.id, r) for r in recordings)
        supervisions = SupervisionSet.from_segments(
            dataclasses.replace(s, channel=0) if s.recording_id in mono else s for s in supervisions
        )
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    rates = Counter(c.sampling_rate for c in cuts if c.sampling_rate != SAMPLING_RATE)
    if rates:
        logger.warning(
            "Part %s: resampling %d cut(s) from %s Hz to %d Hz",
            part, sum(rates.values()), sorted(rates), SAMPLING_RATE,
        )  # fmt: skip
        cuts = cuts.resample(SAMPLING_RATE)
    return cuts.trim_to_supervisions(keep_overlapping=False)


def filter_cuts(cuts: CutSet, cut_filter: CutFilter, part: str) -> CutSet:
    """Drops cuts rejected by ``cut_filter``; logs the count per reason."""
    kept, dropped = [], Counter()
    for cut in cuts:
        reason = cut_filter.reason(cut)
        if reason is None:
            kept.append(cut)
        else:
            dropped[reason] += 1
            logger.debug(
                "Part %s: dropping cut %s (%.3f s): %s", part, cut.id, cut.duration, reason
            )
    total = len(kept) + sum(dropped.values())
    summary = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "none"
    logger.info("Part %s: kept %d of %d cuts; dropped: %s", part, len(kept), total, summary)
    if not kept:
        raise FeatureError(f"Part {part}: no cut is left after the length filter ({summary})")
    return CutSet.from_cuts(kept)


def _compute(
    cuts: CutSet,
    feats_dir: Path,
    num_jobs: int,
    part: str,
    executor: Executor | None,
    fbank: str = "icefall",
) -> CutSet:
    """Extracts and stores features; raises naming the cuts whose audio failed to load
    (Lhotse drops those silently)."""
    extractor = fbank_extractor(kind=fbank)
    # absolute, as the audio paths are: the cuts work from any working directory
    storage = (feats_dir if num_jobs > 1 else feats_dir / "feats-0").resolve()
    feats_dir.mkdir(parents=True, exist_ok=True)
    try:
        with_feats = cuts.compute_and_store_features(
            extractor=extractor,
            storage_path=storage,
            num_jobs=num_jobs,
            storage_type=LilcomChunkyWriter,
            executor=executor if num_jobs > 1 else None,
            progress_bar=False,
        ).to_eager()
    except OSError as e:  # e.g. a full disk: free what was written, say where
        shutil.rmtree(feats_dir, ignore_errors=True)
        raise write_error(e, feats_dir, f"Part {part}: storing features") from e
    done = {c.id for c in with_feats}
    lost = [c for c in cuts if c.id not in done]
    if lost:
        details = []
        for cut in lost[:5]:
            try:
                cut.load_audio()
                details.append(f"cut {cut.id}: no features")
            except Exception as e:  # the loading error names the file
                details.append(f"cut {cut.id}: {str(e).splitlines()[0]}")
        raise FeatureError(
            f"Part {part}: audio of {len(lost)} cut(s) could not be read: " + "; ".join(details)
        )
    return with_feats.sort_by_recording_id()


def compute_fbank_part(
    manifest_dir: Path,
    output_dir: Path,
    prefix: str,
    part: str,
    *,
    length_filter: CutFilter | None,
    speed_perturb: bool = False,
    num_jobs: int = 1,
    executor: Executor | None = None,
    force: bool = False,
    fbank: str = "icefall",
) -> Path:
    """Writes ``{prefix}_cuts_{part}.jsonl.gz`` and ``{prefix}_feats_{part}/``; returns the cuts path.

    ``length_filter`` None keeps every cut that gives at least one encoder frame (for dev/test).
    ``executor``: a process pool (spawn context) to reuse across parts when ``num_jobs > 1``;
    without it Lhotse starts one per call. ``fbank``: the kind (:mod:`w2vbert.data.fbank`); a
    finished part of another kind is an error (not silently kept, not silently replaced).
    """
    output_dir = Path(output_dir)
    cuts_path = output_dir / f"{prefix}_cuts_{part}.jsonl.gz"
    feats_dir = output_dir / f"{prefix}_feats_{part}"
    if cuts_path.is_file() and not force:
        try:
            check_feature_types(CutSet.from_file(cuts_path), fbank, str(cuts_path), limit=1)
        except ValueError as e:
            raise FeatureError(
                f"Part {part}: {e} Use another --output-dir for fbank {fbank!r} (or --force to "
                f"replace these features)."
            ) from None
        logger.info("Part %s: %s exists, skipping", part, cuts_path)
        return cuts_path
    if cuts_path.is_file():  # forced: the old cuts must not outlive their features
        logger.info("Part %s: removing %s (forced re-run)", part, cuts_path)
        cuts_path.unlink()
    if feats_dir.exists():
        logger.info(
            "Part %s: removing features of an unfinished or forced run: %s", part, feats_dir
        )
        shutil.rmtree(feats_dir)
    cuts = load_part_cuts(manifest_dir, prefix, part, feats_dir / "mono")
    if speed_perturb:
        cuts = cuts + sum((cuts.perturb_speed(f) for f in SPEED_FACTORS), CutSet())
        logger.info("Part %s: speed perturbation %s added", part, " ".join(map(str, SPEED_FACTORS)))
    cuts = filter_cuts(cuts, length_filter or encoder_cut_filter(), part)
    with_feats = _compute(cuts, feats_dir, num_jobs, part, executor, fbank)
    with atomic_output(cuts_path) as tmp:
        with_feats.to_file(tmp)
    hours = sum(c.duration for c in with_feats) / 3600.0
    logger.info(
        "Part %s: %d cuts, %.3f h of features -> %s", part, len(with_feats), hours, cuts_path
    )
    return cuts_path


def warn_shared_ids(
    output_dir: Path, prefix: str, train_parts: Sequence[str], eval_parts: Sequence[str]
) -> int:
    """Logs a warning when a cut id of a training part is also in a dev/test part (the same
    utterance trained on and scored: results that look better than they are); returns the count."""

    def ids(part: str) -> set[str]:
        path = Path(output_dir) / f"{prefix}_cuts_{part}.jsonl.gz"
        if not path.is_file():
            return set()
        return {c.id for c in load_manifest_lazy(path) if not is_speed_perturbed(c.id)}

    train_ids = set().union(*(ids(p) for p in train_parts)) if train_parts else set()
    shared = sorted(train_ids & set().union(*(ids(p) for p in eval_parts))) if eval_parts else []
    if shared:
        logger.warning(
            "%d cut id(s) are in a training part (%s) and a dev/test part (%s), e.g. %s",
            len(shared), " ".join(train_parts), " ".join(eval_parts), shared[:5],
        )  # fmt: skip
    return len(shared)


def is_speed_perturbed(cut_id: str) -> bool:
    """True for the ids Lhotse gives speed-perturbed copies (``<id>_sp0.9``, ``<id>_sp1.1``)."""
    return any(cut_id.endswith(f"_sp{f}") for f in SPEED_FACTORS)


def write_pretrain_cuts(output_dir: Path, prefix: str, parts: Sequence[str]) -> Path:
    """``{prefix}_cuts_pretrain.jsonl.gz``: the cuts of ``parts`` (speed-perturbed copies left out)."""
    output_dir = Path(output_dir)
    out = output_dir / f"{prefix}_cuts_{PRETRAIN_NAME}.jsonl.gz"
    cuts = []
    for part in parts:
        path = output_dir / f"{prefix}_cuts_{part}.jsonl.gz"
        if not path.is_file():
            raise FeatureError(
                f"Pre-training part {part}: cuts file {path} does not exist: the part has no "
                f"manifests (stage 1 ignores a directory without LibriSpeech/Libri-Light audio; "
                f"see its log) or it is not among this run's parts"
            )
        try:
            cuts.extend(c for c in load_manifest_lazy(path) if not is_speed_perturbed(c.id))
        except (EOFError, OSError, ValueError) as e:  # a truncated or corrupt .jsonl.gz
            raise FeatureError(
                f"Pre-training part {part}: cannot read {path} ({type(e).__name__}: {e}); "
                "re-run stage 2 for it with --force"
            ) from e
    seen: Counter[str] = Counter(c.id for c in cuts)
    repeated = sorted(cut_id for cut_id, n in seen.items() if n > 1)
    if repeated:
        raise FeatureError(
            f"Pre-training parts {' '.join(parts)}: {len(repeated)} cut id(s) occur more than "
            f"once (the same utterance twice?), e.g. {repeated[:5]}"
        )
    with atomic_output(out) as tmp:
        CutSet.from_cuts(cuts).to_file(tmp)
    hours = sum(c.duration for c in cuts) / 3600.0
    logger.info(
        "Pre-training cuts: %d (%.3f h) from %s -> %s", len(cuts), hours, " ".join(parts), out
    )
    return out
