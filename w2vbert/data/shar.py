"""Training input from Lhotse Shar directories (``cuts.NNNNNN.jsonl.gz`` plus ``features.*.tar``
or ``recording.*.tar`` shards, as stage 2's ``--shar-dir`` writes them).

:func:`open_shar` reads a directory lazily with the shard order shuffled; :class:`SharSampler`
(a ``DynamicBucketingSampler``) sets the shard shuffle to ``Random(seed + epoch)`` on every
``set_epoch``, so the order of an epoch is a function of (seed, epoch) only.

Under DDP (``split_by_rank``) each rank reads only its own shards: the epoch's shard order, the
same on every rank, is dealt out ``shards[rank::world_size]`` (Lhotse's ``split_for_dataloading``),
and each rank's sampler batches its own cuts (no I/O of the other ranks' shards, which a sampler
sharding batches would read and drop). The ranks' cut counts then differ by up to a shard, so the
trainer ends an epoch for all ranks when the first runs out (``Trainer(rank_local_data=True)``):
at most about one shard per rank of an epoch is left out, a different one each epoch.

Resume guarantee (tested in tests/test_data_shar.py): Lhotse's sampler ``load_state_dict`` does
not store a position in the data; it calls ``set_epoch(epoch)`` and re-draws the epoch's
consumed batches (``diagnostics`` ``total_batches``, which the recipe sets to the batches
actually trained). Over Shar this re-reads those shards (their tar members too: I/O of the
consumed part of the epoch, no training compute) and then yields exactly the batches an
uninterrupted run yields next, given the same directory, seed, world size and sampler settings.
Without :class:`SharSampler` it is not: Lhotse's reader counts completed passes itself
(``stateful_shuffle``), which a resumed process has not made, so the resumed epoch would get
another shard order (the runner's sampler finds the reader through its cut filter).

Costs to know: under DDP with ``split_by_rank`` (what the runner uses) a rank reads only its own
shards; without it every rank reads every shard and keeps its share of the batches; at start the sampler's duration-bin estimate reads the first
10,000 cuts (with their tar data), and the runner's scan reads only ``cuts.*.jsonl.gz``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.shar.readers.lazy import LazySharIterator


def is_shar_dir(path: Path | str) -> bool:
    """A directory holding Shar cut shards ``cuts.*.jsonl*``."""
    path = Path(path)
    return path.is_dir() and any(path.glob("cuts.*.jsonl*"))


def shar_fields(path: Path | str) -> dict[str, list[Path]]:
    """``{field: sorted shard paths}`` of a Shar directory (``cuts`` included)."""
    fields: dict[str, list[Path]] = {}
    for p in sorted(Path(path).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            fields.setdefault(p.name.split(".")[0], []).append(p)
    return fields


def open_shar(
    path: Path | str,
    what: str = "--train-cuts",
    *,
    manifest_only: bool = False,
    needs_features: bool = False,
    split_by_rank: bool = False,
) -> CutSet:
    """A lazy CutSet over a Shar directory, shards shuffled (seed set by :class:`SharSampler`).

    ``manifest_only``: the cuts only (no tar reads; for scans). ``needs_features``: an error
    naming ``what`` when the shards hold no features (audio only needs --on-the-fly-feats).
    ``split_by_rank``: this DDP rank's shards only (see the module docstring); there must be at
    least as many shards as ranks.
    """
    fields = shar_fields(path)
    counts = {name: len(paths) for name, paths in fields.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"{what} {path}: the Shar fields have different shard counts: {counts}")
    if needs_features and "features" not in fields:
        raise ValueError(
            f"{what} {path}: the Shar shards hold {sorted(set(fields) - {'cuts'})} but no features; "
            "train with --on-the-fly-feats (fbank computed from the audio)"
        )
    if manifest_only:
        fields = {"cuts": fields["cuts"]}
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if split_by_rank and counts.get("cuts", 0) < world_size:
        raise ValueError(
            f"{what} {path}: {counts.get('cuts', 0)} Shar shard(s) for {world_size} ranks: each "
            "rank reads its own shards; write smaller shards (stage 2 --shar-shard-size)"
        )
    return CutSet.from_shar(
        fields=fields, shuffle_shards=True, stateful_shuffle=True, seed=0,
        split_for_dataloading=split_by_rank,
    )  # fmt: skip


def shar_source(cuts: CutSet) -> LazySharIterator | None:
    """The Shar reader under ``cuts`` (through lazy filters/maps, which may wrap a CutSet or its
    iterator), or None."""
    node: Any = cuts.data
    for _ in range(100):  # a chain of lazy wrappers; an eager list ends it
        if isinstance(node, LazySharIterator):
            return node
        if isinstance(node, CutSet):
            node = node.data
        else:
            node = getattr(node, "iterator", None)
        if node is None:
            return None
    return None


class SharSampler(DynamicBucketingSampler):
    """A DynamicBucketingSampler whose ``set_epoch`` also sets the Shar shard order to
    ``Random(seed + epoch)`` (Lhotse's own counter only counts completed passes, which a
    resumed run has not made)."""

    def __init__(self, cuts: CutSet, *args: Any, source: LazySharIterator, **kwargs: Any) -> None:
        self.source = source
        source.seed = kwargs.get("seed", 0)
        source.epoch = 0
        super().__init__(cuts, *args, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.source.epoch = epoch
