"""Unions of stage 2's parts: ``{prefix}_cuts_pretrain.jsonl.gz`` (the pre-training parts,
speed-perturbed copies left out) and optionally ``{prefix}_cuts_train.jsonl.gz`` (all training
parts, for fine-tuning on several), each globally shuffled in bounded memory
(:mod:`w2vbert.prep.shuffle_cuts`); and the warning about ids shared by training and dev/test.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Iterator, Sequence

from lhotse import load_manifest_lazy

from w2vbert.prep.compute_features import FeatureError, is_speed_perturbed
from w2vbert.prep.shuffle_cuts import write_shuffled_cuts

logger = logging.getLogger(__name__)

PRETRAIN_NAME = "pretrain"
TRAIN_UNION_NAME = "train"


def warn_shared_ids(
    output_dir: Path, prefix: str, train_parts: Sequence[str], eval_parts: Sequence[str]
) -> int:
    """Logs a warning when a cut id of a training part is also in a dev/test part (the same
    utterance trained on and scored: results that look better than they are); returns the count.

    Memory: the dev/test ids only (a set of strings, bounded by the dev/test parts' size); the
    training parts are streamed past it.
    """

    def ids(part: str) -> Iterator[str]:
        path = Path(output_dir) / f"{prefix}_cuts_{part}.jsonl.gz"
        if path.is_file():
            yield from (c.id for c in load_manifest_lazy(path) if not is_speed_perturbed(c.id))

    eval_ids = set(itertools.chain.from_iterable(ids(p) for p in eval_parts))
    if not eval_ids:
        return 0
    shared = 0
    examples: list[str] = []
    for cut_id in itertools.chain.from_iterable(ids(p) for p in train_parts):
        if cut_id in eval_ids:
            eval_ids.discard(cut_id)  # counted once
            shared += 1
            examples.append(cut_id)
    if shared:
        logger.warning(
            "%d cut id(s) are in a training part (%s) and a dev/test part (%s), e.g. %s",
            shared, " ".join(train_parts), " ".join(eval_parts), sorted(examples)[:5],
        )  # fmt: skip
    return shared


def write_pretrain_cuts(
    output_dir: Path, prefix: str, parts: Sequence[str], *, seed: int = 0
) -> Path:
    """``{prefix}_cuts_pretrain.jsonl.gz``: the cuts of ``parts`` (speed-perturbed copies left
    out), shuffled with ``seed`` in bounded memory (:func:`write_shuffled_cuts`); a cut id in two
    parts is an error."""
    return write_union_cuts(output_dir, prefix, parts, PRETRAIN_NAME, seed=seed, speed_copies=False)


def write_union_cuts(
    output_dir: Path,
    prefix: str,
    parts: Sequence[str],
    name: str,
    *,
    seed: int = 0,
    speed_copies: bool = True,
) -> Path:
    """``{prefix}_cuts_{name}.jsonl.gz``: the cuts of ``parts``, globally shuffled with ``seed``
    (``speed_copies`` False: speed-perturbed copies left out). Used for the pre-training union
    and the optional fine-tuning union ``{prefix}_cuts_train.jsonl.gz``."""
    output_dir = Path(output_dir)
    what = "Pre-training" if name == PRETRAIN_NAME else f"Fine-tuning union ({name})"
    inputs = []
    for part in parts:
        path = output_dir / f"{prefix}_cuts_{part}.jsonl.gz"
        if not path.is_file():
            raise FeatureError(
                f"{what} part {part}: cuts file {path} does not exist: the part has no "
                f"manifests (stage 1 ignores a directory without LibriSpeech/Libri-Light audio; "
                f"see its log) or it is not among this run's parts"
            )
        inputs.append(path)
    out = output_dir / f"{prefix}_cuts_{name}.jsonl.gz"
    try:
        stats = write_shuffled_cuts(
            inputs,
            out,
            seed=seed,
            keep=None if speed_copies else (lambda i: not is_speed_perturbed(i)),
        )
    except ValueError as e:  # a repeated id, or a truncated/corrupt input
        raise FeatureError(f"{what} parts {' '.join(parts)}: {e}") from e
    logger.info(
        "%s cuts: %d (%.3f h) from %s, shuffled (seed %d, %d bucket(s)) -> %s",
        what, stats.num_cuts, stats.seconds / 3600, " ".join(parts), seed, stats.num_buckets, out,
    )  # fmt: skip
    return out


def _newer_than(out: Path, inputs: Sequence[Path]) -> bool:
    """``out`` exists and is newer than every existing input (make's rule)."""
    if not out.is_file():
        return False
    mtime = out.stat().st_mtime_ns
    return all(not p.is_file() or p.stat().st_mtime_ns <= mtime for p in inputs)


def write_unions(
    output_dir: Path,
    prefix: str,
    pretrain_parts: Sequence[str],
    train_parts: Sequence[str] | None = None,
    *,
    seed: int = 0,
    force: bool = False,
) -> None:
    """The pre-training union of ``pretrain_parts`` and, when ``train_parts`` is given, the
    fine-tuning union; each is skipped when it is newer than its parts' cuts (unless ``force``)."""
    unions = [(PRETRAIN_NAME, pretrain_parts, False)]
    if train_parts is not None:
        unions.append((TRAIN_UNION_NAME, train_parts, True))
    for name, parts, speed_copies in unions:
        out = Path(output_dir) / f"{prefix}_cuts_{name}.jsonl.gz"
        inputs = [Path(output_dir) / f"{prefix}_cuts_{p}.jsonl.gz" for p in parts]
        if not parts:
            logger.info("No parts for %s: not written", out)
        elif not force and _newer_than(out, inputs):
            logger.info("%s is newer than its parts' cuts, skipping", out)
        else:
            write_union_cuts(output_dir, prefix, parts, name, seed=seed, speed_copies=speed_copies)
