"""Several --train-cuts manifests read as one lazily interleaved set (fine-tuning on 960 h)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut

from w2vbert.data.sampling import DataConfig, count_cuts, load_train_cuts


def _write_part(root: Path, name: str, num: int) -> Path:
    cuts = CutSet.from_cuts(
        dummy_cut(i, duration=1.0 + (i % 7) * 0.5).with_id(f"{name}-{i:04d}") for i in range(num)
    )
    path = root / f"cuts_{name}.jsonl.gz"
    cuts.to_file(path)
    return path


@pytest.fixture()
def parts(tmp_path: Path) -> list[Path]:
    return [_write_part(tmp_path, n, k) for n, k in (("a", 20), ("b", 60), ("c", 120))]


def test_several_train_cut_files_give_every_cut_once_spread_over_the_epoch(parts):
    assert [count_cuts(p) for p in parts] == [20, 60, 120]
    ids = [c.id for c in load_train_cuts(parts, "--train-cuts", seed=0)]
    assert sorted(ids) == sorted(c.id for p in parts for c in CutSet.from_file(p))
    # in proportion to the sizes from the start, not one part after another
    first = [i[0] for i in ids[:50]]
    assert {x: first.count(x) for x in "abc"} == pytest.approx({"a": 5, "b": 15, "c": 30}, abs=6)
    ends = [max(k for k, i in enumerate(ids) if i[0] == x) for x in "abc"]
    assert min(ends) > 0.75 * len(ids)  # every part lasts (nearly) to the end of the epoch
    # each part keeps its own order; the interleave is a function of the seed
    assert [i for i in ids if i[0] == "b"] == [f"b-{k:04d}" for k in range(60)]
    assert ids == [c.id for c in load_train_cuts(parts, "--train-cuts", seed=0)]
    assert ids != [c.id for c in load_train_cuts(parts, "--train-cuts", seed=1)]


def test_sampler_over_several_files_resumes_at_the_same_batch(parts):
    def sampler() -> DynamicBucketingSampler:
        cuts = load_train_cuts(parts, "--train-cuts", seed=0)
        s = DynamicBucketingSampler(cuts, max_duration=10.0, num_buckets=2, shuffle=True, seed=0)
        s.set_epoch(1)
        return s

    full = [[c.id for c in b] for b in sampler()]
    first = sampler()
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    resumed = sampler()
    resumed.load_state_dict(state)
    assert [[c.id for c in b] for b in resumed] == full[5:]


def test_train_cuts_flag_takes_several_files_and_one_is_recorded_as_before(parts):
    parser = argparse.ArgumentParser()
    DataConfig.add_arguments(parser)
    config = DataConfig.from_args(parser.parse_args(["--train-cuts", *map(str, parts)]))
    assert config.train_cuts == tuple(parts)
    assert config.settings()["train_cuts"] == [str(p) for p in parts]
    one = DataConfig.from_args(parser.parse_args(["--train-cuts", str(parts[0])]))
    assert one.settings()["train_cuts"] == str(parts[0])  # checkpoints of older runs match
    assert DataConfig(train_cuts=parts[0]).train_cuts == (parts[0],)


def test_an_empty_train_cuts_file_among_several_is_an_error_naming_it(parts, tmp_path):
    empty = tmp_path / "cuts_empty.jsonl.gz"
    CutSet.from_cuts([]).to_file(empty)
    with pytest.raises(ValueError, match=r"--train-cuts: .*cuts_empty\.jsonl\.gz hold\(s\) no"):
        load_train_cuts([*parts, empty], "--train-cuts")
    with pytest.raises(FileNotFoundError, match=r"--train-cuts .*cuts_nope\.jsonl\.gz does not"):
        load_train_cuts([parts[0], tmp_path / "cuts_nope.jsonl.gz"], "--train-cuts")
