"""The pre-training cuts as Lhotse Shar: tar shards of ``shard_size`` cuts, each shard's cuts in
the (already globally shuffled) order of the cuts file, with the features (``features.*.tar``,
lilcom; w2v-BERT 2.0's exactly, as numpy) or the audio only (``recording.*.tar``, FLAC of each
cut's 16 kHz mono span; training then computes fbank on the fly), plus ``cuts.*.jsonl.gz``.

Written into a temporary directory renamed on success; then ``<dir>.json`` beside it records
the source file (size, mtime) and the settings, so an up-to-date Shar directory is skipped on a
re-run (it is not inside: Lhotse takes every file in a Shar directory for a field).
Read it back with :func:`w2vbert.data.shar.open_shar` (shard order shuffled per epoch).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lhotse import CutSet

from w2vbert.data.fbank import W2vBert2Fbank
from w2vbert.util.atomic import atomic_directory, atomic_write_text

logger = logging.getLogger(__name__)

SHAR_FIELDS = {"features": {"features": "lilcom"}, "audio": {"recording": "flac"}}


def _feature_type(cuts: CutSet) -> str | None:
    """The feature type of the first cut with features (one kind per cuts file)."""
    for cut in cuts:
        if cut.has_features:
            return cut.features.type
    return None


def info_file(shar_dir: Path) -> Path:
    """``<shar_dir>.json``: what the Shar directory was written from."""
    return Path(shar_dir).with_name(Path(shar_dir).name + ".json")


def _info(cuts_path: Path, fields: str, shard_size: int) -> dict:
    stat = Path(cuts_path).stat()
    return {
        "source": str(Path(cuts_path).resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "fields": fields,
        "shard_size": shard_size,
    }


def write_shar(
    cuts_path: Path,
    out_dir: Path,
    *,
    fields: str = "features",
    shard_size: int = 1000,
    force: bool = False,
) -> Path:
    """Writes ``cuts_path`` as Shar into ``out_dir`` (skipped when it is up to date); returns it.

    ``fields``: ``"features"`` (stored fbank, lilcom) or ``"audio"`` (FLAC, features dropped).
    """
    if fields not in SHAR_FIELDS:
        raise ValueError(
            f"`fields` must be one of {sorted(SHAR_FIELDS)}, but is {fields!r} instead."
        )
    if shard_size < 1:
        raise ValueError(f"`shard_size` must be >= 1, but is {shard_size} instead.")
    out_dir = Path(out_dir)
    info = _info(cuts_path, fields, shard_size)
    info_path = info_file(out_dir)
    if not force and info_path.is_file() and json.loads(info_path.read_text()) == info:
        logger.info("Shar %s is up to date with %s, skipping", out_dir, cuts_path)
        return out_dir
    info_path.unlink(missing_ok=True)  # the directory is about to change
    cuts = CutSet.from_jsonl_lazy(cuts_path)
    shar_fields = SHAR_FIELDS[fields]
    if fields == "audio":
        cuts = cuts.drop_features()
    elif _feature_type(cuts) == W2vBert2Fbank.name:
        # Shar's lilcom would round to 2 ** -5 again (see STORAGE_TICK_POWER): store exactly
        shar_fields = {"features": "numpy"}
    with atomic_directory(out_dir) as tmp:
        written = cuts.to_shar(
            tmp, fields=shar_fields, shard_size=shard_size, warn_unused_fields=False
        )
    atomic_write_text(info_path, json.dumps(info, indent=1) + "\n")
    logger.info(
        "Shar: %d shard(s) of <= %d cuts with %s from %s -> %s",
        len(written["cuts"]), shard_size, fields, cuts_path, out_dir,
    )  # fmt: skip
    return out_dir
