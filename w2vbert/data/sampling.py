"""Data-loading settings, the bucketing sampler (sharded by DDP rank) and the DataLoader.

With ``num_workers=0`` (the default) batches are made in the training process, so the sampler's
position and every RNG used for augmentation are exactly restorable from a checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler
from lhotse.dataset.sampling.base import CutSampler

from w2vbert.data.shar import SharSampler, is_shar_dir, open_shar, shar_source
from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    config_to_dict,
    dataclass_from_args,
    flag,
)

logger = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the cuts are and how they are batched."""

    train_cuts: tuple[Path, ...] | None = flag(
        None,
        "Training CutSet(s): Lhotse cuts manifests (e.g. data/fbank/*_cuts_*.jsonl.gz), several "
        "read as one set, interleaved at random in proportion to their sizes; or one Shar "
        "directory (stage 2 --shar-dir).",
    )
    valid_cuts: Path | None = flag(None, "Validation CutSet (optional).")
    max_duration: float = flag(
        200.0,
        "Seconds of audio per batch (per rank). With --global-batch-duration G: the most a device "
        "holds; batches are then bounded by G / (ranks x --accum-grad), <= this.",
    )
    valid_max_duration: float | None = flag(
        None,
        "Seconds of audio per validation batch (default: --max-duration). Pre-training's code "
        "usage is counted per batch, so a batch holding the whole dev set gives the share of "
        "codebook entries used on it.",
    )
    num_buckets: int = flag(30, "Duration buckets of the DynamicBucketingSampler.")
    shuffle: bool = flag(True, "Shuffle training cuts (seeded by --seed and the epoch).")
    drop_last: bool = flag(
        False,
        "Drop incomplete batches (a bucket that ran out before --max-duration); on small data with "
        "many buckets this can drop everything. Ranks get equal batch counts either way.",
    )
    num_workers: int = flag(
        0, "DataLoader worker processes (0: exact resume; >0: faster, RNG not restorable)."
    )
    on_the_fly_feats: bool = flag(
        False, "Compute fbank from audio on the fly instead of reading stored features."
    )
    min_cut_duration: float = flag(0.0, "Drop cuts shorter than this many seconds.")
    max_cut_duration: float = flag(30.0, "Drop cuts longer than this many seconds.")
    scan_cuts: bool = flag(
        True, "Read the training cuts once at start to log filter counts and the epoch's hours."
    )

    def __post_init__(self) -> None:
        if isinstance(self.train_cuts, (str, Path)):  # one path given directly
            object.__setattr__(self, "train_cuts", (Path(self.train_cuts),))
        problems = []
        if self.train_cuts is not None and not self.train_cuts:
            problems.append("`train_cuts` must name at least one file, but is empty.")
        if self.max_duration <= 0:
            problems.append(f"`max_duration` must be > 0, but is {self.max_duration} instead.")
        if self.valid_max_duration is not None and self.valid_max_duration <= 0:
            problems.append(
                f"`valid_max_duration` must be > 0, but is {self.valid_max_duration} instead."
            )
        if self.num_buckets < 2:
            problems.append(f"`num_buckets` must be >= 2, but is {self.num_buckets} instead.")
        if self.num_workers < 0:
            problems.append(f"`num_workers` must be >= 0, but is {self.num_workers} instead.")
        if self.min_cut_duration > self.max_cut_duration:
            problems.append(
                f"`min_cut_duration` ({self.min_cut_duration}) exceeds `max_cut_duration` ({self.max_cut_duration})."
            )
        if problems:
            raise ValueError("Invalid DataConfig:\n  " + "\n  ".join(problems))

    def settings(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict, as checkpoints store it; one training file is
        recorded as a plain path, as before several were accepted (so older runs resume)."""
        settings = config_to_dict(self)
        if self.train_cuts is not None and len(self.train_cuts) == 1:
            settings["train_cuts"] = str(self.train_cuts[0])
        return settings

    def cut_duration_limits(self) -> dict[str, float]:
        """``min_duration``/``max_duration`` keyword arguments of a cut filter."""
        return {"min_duration": self.min_cut_duration, "max_duration": self.max_cut_duration}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, **defaults: Any) -> None:
        add_dataclass_arguments(parser.add_argument_group("data"), cls, defaults)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> "DataConfig":
        return dataclass_from_args(cls, args, **overrides)


def load_cuts(
    path: Path | str | None,
    what: str,
    *,
    manifest_only: bool = False,
    needs_features: bool = False,
    split_by_rank: bool = False,
) -> CutSet:
    """Open a Lhotse CutSet lazily: a cuts file, or a Shar directory (:func:`open_shar`, whose
    ``manifest_only``/``needs_features`` these are); a missing file gives an error naming the flag."""
    if path is None:
        raise ValueError(f"{what} is required, but was not given.")
    path = Path(path)
    if is_shar_dir(path):
        return open_shar(
            path, what, manifest_only=manifest_only, needs_features=needs_features,
            split_by_rank=split_by_rank,
        )  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    try:
        return CutSet.from_file(path)
    except (EOFError, OSError, json.JSONDecodeError, zlib.error) as e:  # truncated or corrupt
        raise ValueError(
            f"{what} {path}: cannot read the cuts ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt (re-run the stage that wrote it)"
        ) from e


def count_cuts(path: Path) -> int:
    """The number of cuts in a cuts manifest: its lines for ``.jsonl(.gz)`` (no JSON parsing),
    else one pass over the cuts."""
    path = Path(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.suffix == ".gz" else open
        num_lines = 0
        try:
            with opener(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    num_lines += chunk.count(b"\n")
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(
                f"{path}: cannot read the cuts ({type(e).__name__}: {e}); the file is truncated or "
                "corrupt (re-run the stage that wrote it)"
            ) from e
        return num_lines
    return sum(1 for _ in load_cuts(path, str(path)))


def load_train_cuts(
    paths: Sequence[Path], what: str, seed: int = 0, **open_options: bool
) -> CutSet:
    """The training cuts of one or more manifests, or of one Shar directory, opened lazily
    (:func:`load_cuts`, which takes ``open_options``).

    Several manifests (e.g. the LibriSpeech 960 h parts) become one set: ``CutSet.mux`` draws
    the next cut from a manifest chosen at random with probability proportional to its number of
    cuts (:func:`count_cuts`), so that every part is spread over the whole epoch and all end
    together, where chaining them would give one part after another (the sampler's shuffle
    buffer holds only thousands of cuts). Memory stays flat (one open reader per manifest) and
    the order is a function of ``seed``, the same on every rank and in every pass, which the
    sampler's exact resume (it re-draws the epoch's batches) relies on.
    """
    if not paths:
        raise ValueError(f"{what} is required, but was not given.")
    if len(paths) > 1 and any(is_shar_dir(p) for p in paths):
        raise ValueError(
            f"{what}: a Shar directory is read alone (its shards are the shuffled set), but "
            f"{len(paths)} inputs were given: {' '.join(map(str, paths))}"
        )
    sets = [load_cuts(p, what, **open_options) for p in paths]
    if len(sets) == 1:
        return sets[0]
    weights = [count_cuts(p) for p in paths]
    empty = [str(p) for p, n in zip(paths, weights) if n == 0]
    if empty:
        raise ValueError(f"{what}: {' '.join(empty)} hold(s) no cuts.")
    logger.info(
        f"{what}: {sum(weights)} cuts from {len(paths)} manifests, interleaved at random "
        f"({', '.join(f'{Path(p).name}: {n}' for p, n in zip(paths, weights))})"
    )
    return CutSet.mux(*sets, weights=weights, seed=seed)


def create_sampler(
    cuts: CutSet,
    config: DataConfig,
    *,
    train: bool,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
) -> DynamicBucketingSampler:
    """A DynamicBucketingSampler over ``cuts``; each rank gets its own share of every step's batches.

    Validation with ``config.valid_max_duration`` set uses a plain SimpleCutSampler instead (no
    duration buckets), so that a large enough value puts the whole dev set in one batch. Cuts
    read from Shar get a :class:`SharSampler` (shard order seeded by ``seed`` and the epoch).
    """
    if not train and config.valid_max_duration is not None:
        return SimpleCutSampler(
            cuts,
            max_duration=config.valid_max_duration,
            shuffle=False,
            world_size=world_size,
            rank=rank,
            seed=seed,
        )
    source = shar_source(cuts)
    sampler_class = DynamicBucketingSampler if source is None else SharSampler
    extra = {} if source is None else {"source": source}
    return sampler_class(
        cuts,
        **extra,
        max_duration=config.max_duration,
        num_buckets=config.num_buckets,
        shuffle=config.shuffle and train,
        drop_last=config.drop_last and train,
        world_size=world_size,
        rank=rank,
        seed=seed,
        buffer_size=max(4 * config.num_buckets * 100, 2000),
    )


def create_dataloader(
    dataset: torch.utils.data.Dataset, sampler: Any, num_workers: int = 0, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``dataset[batch_of_cuts]`` for each sampler batch (batch_size=None).

    It gets its own seeded generator, so creating an iterator never draws from torch's global RNG.
    """
    return torch.utils.data.DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )


def sampler_state_dict(sampler: Any, num_consumed: int) -> dict[str, Any]:
    """The sampler's state as if exactly ``num_consumed`` batches of the epoch had been drawn.

    With DataLoader workers the sampler runs ahead of training (prefetching); Lhotse restores a
    position by re-drawing ``total_batches`` of the current epoch, so that count is set to the
    batches actually trained. Other samplers: their own ``state_dict()``.
    """
    state = sampler.state_dict()
    if not isinstance(sampler, CutSampler):
        return state
    state = copy.deepcopy(state)
    diag = state["diagnostics"]
    epoch_stats = diag["stats_per_epoch"][diag["current_epoch"]]
    epoch_stats["kept_batches"] = num_consumed
    epoch_stats["discarded_batches"] = 0
    return state
