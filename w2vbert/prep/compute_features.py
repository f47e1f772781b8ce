"""Stage 2: cuts with stored fbank features, from Lhotse recordings/supervisions manifests.

For each part: ``{prefix}_recordings_{part}.jsonl.gz`` + ``{prefix}_supervisions_{part}.jsonl.gz``
-> cuts streamed in constant memory (:mod:`w2vbert.prep.cut_stream`: one per supervision, 16 kHz
mono, multi-channel audio downmixed, other rates resampled, both logged) -> length filter (logged
counts) -> optional speed perturbation 0.9/1.1 -> kaldifeat fbank (:mod:`w2vbert.data.fbank`)
stored with ``LilcomChunkyWriter`` (precision per kind: ``storage_tick_power``) in
``{prefix}_feats_{part}/`` -> ``{prefix}_cuts_{part}.jsonl.gz``.
No manifest is held in memory: cuts go from the lazily read manifests to the features file and
the cuts file one at a time.

**Pieces.** A part is computed in ``num_pieces`` pieces, contiguous ranges of its recordings; piece
``i`` of ``k`` writes ``feats-{i}-of-{k}.lca`` and, last and under a temporary name renamed on
success, ``cuts-{i}-of-{k}.jsonl.gz`` in the feature directory. A piece whose cuts file exists is
finished and skipped on a re-run; an unfinished one (features without cuts) restarts alone. Pieces
run in a process pool (``executor``) or one per job (``piece``, any number of machines sharing the
output directory); when all are finished they are joined lazily, in order, into the part's cuts
file and their cuts files removed. The part's cuts are the same cuts in the same order for every
``num_pieces`` (only the feature file names differ). With one piece, the piece's cuts file is the
part's cuts file. A stale feature file of no piece of this run (another ``num_pieces``, a killed
run of an older layout) is removed; a forced re-run deletes the old cuts file before its
features; a failed feature write (e.g. a full disk) deletes the piece's features (the directory
when no piece is left) and raises an OSError naming the directory.

The unions of parts (the pre-training cuts, an optional fine-tuning union) are written by
:mod:`w2vbert.prep.cut_unions`.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from concurrent.futures import Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from lhotse import CutSet, LilcomChunkyWriter, load_manifest_lazy

from w2vbert.data.fbank import check_feature_types, fbank_extractor, storage_tick_power
from w2vbert.data.filters import CutFilter, encoder_cut_filter
from w2vbert.prep.cut_stream import (
    StreamError,
    StreamStats,
    count_lines,
    missing_audio,
    piece_range,
    stream_cuts,
)
from w2vbert.util.atomic import atomic_output, write_error

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True, kw_only=True)
class PieceSpec:
    """Everything one piece needs (picklable: it travels to a spawned worker)."""

    label: str  # "Part train-x" or "Part train-x piece 2 of 8", for messages
    rec_path: Path
    sup_path: Path
    feats_path: Path  # .lca, absolute
    cuts_path: Path
    mono_dir: Path
    start: int  # recording ordinals [start, stop)
    stop: int
    min_duration: float | None  # None: keep every cut that gives an encoder step (dev/test)
    max_duration: float | None
    speed_perturb: bool
    fbank: str
    whole_part: bool  # the only piece: no kept cut is an error here
    device: str = "cpu"  # where kaldifeat computes (cuda: the GPU; the stored features are the same)


@dataclass
class PieceResult:
    """Counts of one computed piece (None fields: the piece was finished before)."""

    label: str
    skipped: bool = False
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    stats: StreamStats = field(default_factory=StreamStats)


class _StorageError(Exception):
    """An OSError of the feature writer, carried past ``atomic_output`` (which would blame the
    cuts file)."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(str(error))


def _is_write_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and getattr(e, "errno", None) is not None


def _piece_filter(spec: PieceSpec) -> CutFilter:
    if spec.min_duration is None:
        if spec.fbank == "w2v-bert-2.0":  # its stacked front end: 2 of its own frames per step
            return encoder_cut_filter(2, frontend="stacked", fbank=spec.fbank)
        return encoder_cut_filter()
    return training_cut_filter(spec.min_duration, spec.max_duration)


def compute_piece(spec: PieceSpec) -> PieceResult:
    """Computes one piece: its features file, then its cuts file (renamed last); a finished piece
    (cuts file present) is skipped. Raises FeatureError naming cuts whose audio failed."""
    if spec.cuts_path.is_file():
        return PieceResult(spec.label, skipped=True)
    spec.feats_path.unlink(missing_ok=True)  # an unfinished run's
    messages, num_missing = missing_audio(spec.rec_path, spec.start, spec.stop)
    if num_missing:
        more = f" (and {num_missing - len(messages)} more)" if num_missing > len(messages) else ""
        raise FeatureError(f"{spec.label} ({spec.rec_path}): " + "; ".join(messages) + more)
    extractor = fbank_extractor(device=spec.device, kind=spec.fbank)
    cut_filter = _piece_filter(spec)
    result = PieceResult(spec.label)
    failed: list[str] = []
    num_failed = 0
    storage_error: OSError | None = (
        None  # the feature writer's, even if closing the cuts file fails next
    )

    def cuts_with_features() -> Iterator:
        nonlocal num_failed, storage_error
        spec.feats_path.parent.mkdir(parents=True, exist_ok=True)
        base_cuts = stream_cuts(
            spec.rec_path, spec.sup_path, spec.label, spec.mono_dir,
            spec.start, spec.stop, result.stats,
        )  # fmt: skip
        try:
            tick_power = storage_tick_power(spec.fbank)  # lilcom precision of this kind
            with LilcomChunkyWriter(spec.feats_path, tick_power=tick_power) as writer:
                for base in base_cuts:
                    copies = (
                        [base.perturb_speed(f) for f in SPEED_FACTORS] if spec.speed_perturb else []
                    )
                    for cut in (base, *copies):
                        reason = cut_filter.reason(cut)
                        if reason is not None:
                            result.dropped[reason] += 1
                            continue
                        try:
                            cut = cut.compute_and_store_features(extractor, writer)
                            writer.file.flush()  # a full disk shows here, not in the cuts file
                        except Exception as e:  # unreadable audio: name the cut
                            if _is_write_error(e):
                                raise
                            num_failed += 1
                            if len(failed) < 5:
                                failed.append(f"cut {cut.id}: {str(e).strip().splitlines()[0]}")
                            continue
                        result.kept += 1
                        yield cut
        except OSError as e:
            if not _is_write_error(e):
                raise
            storage_error = e
            raise _StorageError(e) from e

    try:
        with atomic_output(spec.cuts_path) as tmp:
            CutSet(cuts_with_features()).to_file(tmp)
            if num_failed:
                raise FeatureError(
                    f"{spec.label}: audio of {num_failed} cut(s) could not be read: "
                    + "; ".join(failed)
                )
            _log_filter_counts(result)
            if spec.whole_part and result.kept == 0:
                raise FeatureError(
                    f"{spec.label}: no cut is left after the length filter ({_summary(result.dropped)})"
                )
    except (_StorageError, OSError):
        if storage_error is None:
            raise
        spec.feats_path.unlink(missing_ok=True)
        where = spec.feats_path.parent
        raise write_error(
            storage_error, where, f"{spec.label}: storing features"
        ) from storage_error
    except StreamError as e:
        raise FeatureError(str(e)) from None
    return result


def _summary(dropped: Counter[str]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "none"


def _log_filter_counts(result: PieceResult) -> None:
    total = result.kept + sum(result.dropped.values())
    logger.info(
        "%s: kept %d of %d cuts; dropped: %s",
        result.label,
        result.kept,
        total,
        _summary(result.dropped),
    )


def _log_piece(result: PieceResult) -> None:
    """The parent's log of a piece (a spawned worker's own log lines go nowhere)."""
    if result.skipped:
        logger.info("%s: finished before, skipping", result.label)
        return
    stats = result.stats
    if stats.downmixed:
        logger.warning(
            "%s: downmixing %d multi-channel recording(s) to mono copies",
            result.label,
            stats.downmixed,
        )
    if stats.num_resampled:
        logger.warning(
            "%s: resampling %d cut(s) from %s Hz to 16000 Hz",
            result.label, stats.num_resampled, sorted(stats.resampled_rates),
        )  # fmt: skip


def piece_files(feats_dir: Path, num_pieces: int, piece: int) -> tuple[Path, Path]:
    """``(features .lca, cuts .jsonl.gz)`` of piece ``piece`` of ``num_pieces``."""
    name = f"{piece}-of-{num_pieces}"
    return feats_dir / f"feats-{name}.lca", feats_dir / f"cuts-{name}.jsonl.gz"


def _remove_foreign_files(feats_dir: Path, num_pieces: int, part: str) -> None:
    """Deletes what in ``feats_dir`` belongs to no piece of this ``num_pieces`` (mono/ stays)."""
    if not feats_dir.is_dir():
        return
    own = {p.name for i in range(num_pieces) for p in piece_files(feats_dir, num_pieces, i)}
    foreign = [p for p in feats_dir.iterdir() if p.name not in own and p.name != "mono"]
    if foreign:
        logger.info(
            "Part %s: removing features of an unfinished or forced run: %d file(s) in %s, e.g. %s",
            part, len(foreign), feats_dir, foreign[0].name,
        )  # fmt: skip
    for path in foreign:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


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
    num_pieces: int | None = None,
    piece: int | None = None,
    device: str = "cpu",
) -> Path | None:
    """Writes ``{prefix}_cuts_{part}.jsonl.gz`` and ``{prefix}_feats_{part}/``; returns the cuts
    path (None when only ``piece`` was computed: a later call without ``piece`` joins the pieces).

    ``length_filter`` None keeps every cut that gives at least one encoder frame (for dev/test);
    otherwise its ``min_duration``/``max_duration`` bounds are applied (as
    :func:`training_cut_filter`). ``executor``: a process pool (spawn context) running pieces in
    parallel; ``num_pieces`` defaults to ``num_jobs``. ``fbank``: the kind
    (:mod:`w2vbert.data.fbank`); a finished part of another kind is an error. ``device``:
    kaldifeat's (``cuda``: on the GPU).
    """
    output_dir = Path(output_dir)
    num_pieces = num_pieces or max(1, num_jobs)
    cuts_path = output_dir / f"{prefix}_cuts_{part}.jsonl.gz"
    feats_dir = (output_dir / f"{prefix}_feats_{part}").resolve()
    if cuts_path.is_file() and not force:
        _check_finished_kind(cuts_path, part, fbank)
        logger.info("Part %s: %s exists, skipping", part, cuts_path)
        return cuts_path
    rec_path = Path(manifest_dir) / f"{prefix}_recordings_{part}.jsonl.gz"
    sup_path = Path(manifest_dir) / f"{prefix}_supervisions_{part}.jsonl.gz"
    for path in (rec_path, sup_path):
        if not path.is_file():
            raise FeatureError(f"Part {part}: manifest {path} does not exist (run stage 1 first)")
    if piece is None:
        if cuts_path.is_file():  # forced: the old cuts must not outlive their features
            logger.info("Part %s: removing %s (forced re-run)", part, cuts_path)
            cuts_path.unlink()
        if force and feats_dir.exists():
            logger.info(
                "Part %s: removing features of an unfinished or forced run: %s", part, feats_dir
            )
            shutil.rmtree(feats_dir)
        _remove_foreign_files(feats_dir, num_pieces, part)
    num_recordings = count_lines(rec_path)
    bounds = (None, None)
    if length_filter is not None:
        bounds = (length_filter.min_duration, length_filter.max_duration)
    specs = []
    for i in range(num_pieces) if piece is None else [piece]:
        start, stop = piece_range(num_recordings, num_pieces, i)
        feats_path, piece_cuts = piece_files(feats_dir, num_pieces, i)
        specs.append(
            PieceSpec(
                label=f"Part {part}"
                if num_pieces == 1
                else f"Part {part} piece {i} of {num_pieces}",
                rec_path=rec_path,
                sup_path=sup_path,
                feats_path=feats_path,
                cuts_path=cuts_path if num_pieces == 1 else piece_cuts,
                mono_dir=feats_dir / "mono",
                start=start,
                stop=stop,
                min_duration=bounds[0],
                max_duration=bounds[1],
                speed_perturb=speed_perturb,
                fbank=fbank,
                whole_part=num_pieces == 1,
                device=device,
            )
        )
    for spec in specs:
        if not spec.cuts_path.is_file() and spec.feats_path.is_file():
            logger.info(
                "%s: removing features of an unfinished or forced run: %s",
                spec.label,
                spec.feats_path,
            )
            spec.feats_path.unlink()
    if speed_perturb:
        logger.info("Part %s: speed perturbation %s added", part, " ".join(map(str, SPEED_FACTORS)))
    try:
        _run_pieces(specs, executor)
    except OSError:  # a full disk: free the space unless finished pieces are worth keeping
        if feats_dir.is_dir() and not any(feats_dir.glob("cuts-*-of-*.jsonl.gz")):
            shutil.rmtree(feats_dir, ignore_errors=True)  # nothing finished to keep: free it
        raise
    if piece is not None:
        return None
    if num_pieces > 1:
        _join_pieces([s.cuts_path for s in specs], cuts_path, part)
    num_cuts, seconds = _count(cuts_path)
    logger.info(
        "Part %s: %d cuts, %.3f h of features -> %s", part, num_cuts, seconds / 3600, cuts_path
    )
    return cuts_path


def _check_finished_kind(cuts_path: Path, part: str, fbank: str) -> None:
    try:
        check_feature_types(load_manifest_lazy(cuts_path), fbank, str(cuts_path), limit=1)
    except ValueError as e:
        raise FeatureError(
            f"Part {part}: {e} Use another --output-dir for fbank {fbank!r} (or --force to "
            f"replace these features)."
        ) from None


def _run_pieces(specs: list[PieceSpec], executor: Executor | None) -> None:
    """Runs the pieces (in ``executor`` when there is more than one); every piece runs even when
    another fails, then the first error is raised."""
    if executor is None or len(specs) == 1:
        for spec in specs:
            _log_piece(compute_piece(spec))
        return
    futures = [executor.submit(compute_piece, spec) for spec in specs]
    wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    for f in futures:
        if f.exception() is None:
            result = f.result()
            _log_piece(result)
            if not result.skipped:
                _log_filter_counts(result)
    if errors:
        raise errors[0]


def _count(cuts_path: Path) -> tuple[int, float]:
    """(cuts, seconds) of a cuts file, read lazily."""
    num, seconds = 0, 0.0
    for cut in load_manifest_lazy(cuts_path):
        num += 1
        seconds += cut.duration
    return num, seconds


def _join_pieces(piece_paths: list[Path], cuts_path: Path, part: str) -> None:
    """The part's cuts file: the pieces' cuts in order, streamed; then the pieces' cuts files go."""
    num_kept = 0

    def cuts() -> Iterator:
        nonlocal num_kept
        for path in piece_paths:
            for cut in load_manifest_lazy(path):
                num_kept += 1
                yield cut

    with atomic_output(cuts_path) as tmp:
        CutSet(cuts()).to_file(tmp)
        if num_kept == 0:
            raise FeatureError(
                f"Part {part}: no cut is left after the length filter (in any piece)"
            )
    for path in piece_paths:
        path.unlink()


def is_speed_perturbed(cut_id: str) -> bool:
    """True for the ids Lhotse gives speed-perturbed copies (``<id>_sp0.9``, ``<id>_sp1.1``)."""
    return any(cut_id.endswith(f"_sp{f}") for f in SPEED_FACTORS)
