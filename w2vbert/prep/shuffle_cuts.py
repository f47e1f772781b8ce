"""A globally shuffled cuts file written in bounded memory, with an exact repeated-id check.

Two passes over the inputs' JSON lines (never parsed into cuts, never all in memory):

1. each line goes to one of B bucket files (plain text, in a scratch directory beside the
   output) chosen by a hash of ``(seed, cut id)``, so a repeated id always meets its twin;
2. each bucket in turn is read (about ``bucket_cuts`` lines), sorted by id (repeated ids are
   then neighbours: counted, and an error), shuffled by ``random.Random(f"{seed}/{b}")`` and
   appended to the output.

B = ceil(N / ``bucket_cuts``), at most ``MAX_BUCKETS`` open files: peak memory is one bucket,
``max(bucket_cuts, N / MAX_BUCKETS)`` lines (~1 KB each for a cut with features). Every bucket
is a hash-random sample of all inputs and is shuffled, so the output is globally mixed; it
depends only on the set of lines and ``seed`` (not on the inputs' order or piece layout).
"""

from __future__ import annotations

import gzip
import json
import math
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from w2vbert.prep.cut_stream import count_lines
from w2vbert.util.atomic import atomic_output, scratch_directory

MAX_BUCKETS = 256


@dataclass(frozen=True)
class ShuffleStats:
    """What :func:`write_shuffled_cuts` wrote."""

    num_cuts: int
    seconds: float
    num_buckets: int


def bucket_of(cut_id: str, seed: int, num_buckets: int) -> int:
    """The bucket of a cut id: a stable hash of (seed, id), uniform over ``num_buckets``."""
    return zlib.crc32(f"{seed}\0{cut_id}".encode()) % num_buckets


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    """``(cut id, JSON line ending in a newline)`` of a (gzipped) cuts manifest."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["id"], line if line.endswith("\n") else line + "\n"
    except (EOFError, OSError, ValueError, KeyError) as e:  # truncated or corrupt
        raise ValueError(
            f"cannot read {path} ({type(e).__name__}: {e}); re-run stage 2 for it with --force"
        ) from e


def write_shuffled_cuts(
    inputs: Sequence[Path],
    out: Path,
    *,
    seed: int = 0,
    keep: Callable[[str], bool] | None = None,
    bucket_cuts: int = 20_000,
) -> ShuffleStats:
    """Writes the cuts of ``inputs`` (those whose id passes ``keep``) to ``out`` (.jsonl.gz),
    shuffled with ``seed``; a cut id found twice raises ValueError naming up to 5 of them and
    writes nothing."""
    out = Path(out)
    total = sum(count_lines(p) for p in inputs)
    num_buckets = max(1, min(MAX_BUCKETS, math.ceil(total / bucket_cuts)))
    num_cuts, seconds, repeated, examples = 0, 0.0, 0, []
    with scratch_directory(out.with_name(out.name + ".buckets")) as scratch:
        paths = [scratch / f"{b}.jsonl" for b in range(num_buckets)]
        files = [open(p, "w", encoding="utf-8") for p in paths]
        try:
            for path in inputs:
                for cut_id, line in _lines(path):
                    if keep is None or keep(cut_id):
                        files[bucket_of(cut_id, seed, num_buckets)].write(line)
        finally:
            for f in files:
                f.close()
        with atomic_output(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
            for b, path in enumerate(paths):
                items = sorted(
                    (cut_id, json.loads(line)["duration"], line) for cut_id, line in _lines(path)
                )
                for prev, item, nxt in zip([None, *items], items, [*items[1:], None]):
                    if (
                        nxt is not None
                        and nxt[0] == item[0]
                        and (prev is None or prev[0] != item[0])
                    ):
                        repeated += 1  # each repeated id once
                        if len(examples) < 5:
                            examples.append(item[0])
                random.Random(f"{seed}/{b}").shuffle(items)
                for _, duration, line in items:
                    f.write(line)
                    seconds += duration
                num_cuts += len(items)
                path.unlink()
            if repeated:
                raise ValueError(
                    f"{repeated} cut id(s) occur more than once (the same utterance twice?), "
                    f"e.g. {sorted(examples)}"
                )
    return ShuffleStats(num_cuts=num_cuts, seconds=seconds, num_buckets=num_buckets)
