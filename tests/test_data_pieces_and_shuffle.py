"""Stage 2 at scale: pieces that restart independently and join to the uninterrupted result,
and unions shuffled in bounded memory (a permutation of the inputs, well mixed)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from data_fixtures import make_librispeech_part
from lhotse import CutSet, load_manifest
from lhotse.testing.dummies import dummy_cut

from w2vbert.prep.compute_features import FeatureError, compute_fbank_part, training_cut_filter
from w2vbert.prep.cut_stream import piece_range
from w2vbert.prep.manifests import prepare_manifests
from w2vbert.prep.shuffle_cuts import write_shuffled_cuts


def test_piece_ranges_cover_the_items_once_in_order():
    for n, k in ((7, 3), (2, 5), (100, 7)):
        ranges = [piece_range(n, k, i) for i in range(k)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError, match=r"`piece` must be in \[0, 3\), but is 3 instead"):
        piece_range(7, 3, 3)


def test_a_failed_piece_restarts_alone_and_the_joined_part_equals_an_uninterrupted_run(tmp_path):
    texts = {f"11-100-{i:04d}": "HELLO THERE" for i in range(6)}
    paths = make_librispeech_part(tmp_path / "c", "train-x", texts=texts, seconds=0.5)
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["train-x"])
    args = (tmp_path / "m", tmp_path / "f", "toy", "train-x")
    kwargs = {"length_filter": training_cut_filter(), "num_pieces": 3}
    good = paths["11-100-0003"].read_bytes()
    paths["11-100-0003"].write_bytes(b"garbage" * 100)  # recording 3: piece 1 (recordings 2-3)
    assert compute_fbank_part(*args, piece=0, **kwargs) is None
    with pytest.raises(
        FeatureError, match=r"Part train-x piece 1 of 3: audio of 1 cut\(s\) .*11-100-0003"
    ):
        compute_fbank_part(*args, piece=1, **kwargs)
    assert compute_fbank_part(*args, piece=2, **kwargs) is None
    feats = tmp_path / "f" / "toy_feats_train-x"
    finished = [
        "feats-0-of-3.lca",
        "feats-2-of-3.lca",
        "cuts-0-of-3.jsonl.gz",
        "cuts-2-of-3.jsonl.gz",
    ]
    stamps = {name: (feats / name).stat().st_mtime_ns for name in finished}
    assert not (feats / "cuts-1-of-3.jsonl.gz").exists()
    assert not (tmp_path / "f" / "toy_cuts_train-x.jsonl.gz").exists()

    paths["11-100-0003"].write_bytes(good)
    joined = load_manifest(compute_fbank_part(*args, **kwargs))  # computes piece 1, joins
    for name in finished[:2]:  # the finished pieces' features were not recomputed
        assert (feats / name).stat().st_mtime_ns == stamps[name]
    assert not list(feats.glob("cuts-*")) and (feats / "feats-1-of-3.lca").is_file()

    whole = load_manifest(
        compute_fbank_part(
            tmp_path / "m", tmp_path / "g", "toy", "train-x", length_filter=training_cut_filter()
        )
    )
    assert [c.id for c in joined] == [c.id for c in whole] == sorted(texts)
    for a, b in zip(joined, whole):
        assert a.duration == b.duration and a.supervisions == b.supervisions
        np.testing.assert_array_equal(a.load_features(), b.load_features())


def _lines(path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def ordered_inputs(tmp_path_factory):
    """3 cuts files of 1,000 dummy cuts each, ids in input order."""
    tmp = tmp_path_factory.mktemp("shuffle")
    paths = []
    for f in range(3):
        path = tmp / f"x_cuts_{f}.jsonl.gz"
        CutSet.from_cuts(dummy_cut(f * 1000 + i) for i in range(1000)).to_file(path)
        paths.append(path)
    return paths


def test_the_shuffled_union_is_a_permutation_of_its_inputs_whatever_their_order(
    ordered_inputs, tmp_path
):
    stats = write_shuffled_cuts(ordered_inputs, tmp_path / "a.jsonl.gz", seed=3, bucket_cuts=400)
    assert stats.num_cuts == 3000 and stats.num_buckets == 8
    out = _lines(tmp_path / "a.jsonl.gz")
    assert sorted(out) == sorted(line for p in ordered_inputs for line in _lines(p))
    write_shuffled_cuts(ordered_inputs[::-1], tmp_path / "b.jsonl.gz", seed=3, bucket_cuts=400)
    assert _lines(tmp_path / "b.jsonl.gz") == out  # a function of the content and the seed
    write_shuffled_cuts(ordered_inputs, tmp_path / "c.jsonl.gz", seed=4, bucket_cuts=400)
    assert _lines(tmp_path / "c.jsonl.gz") != out
    assert not list(tmp_path.glob(".partial*"))  # the bucket files are gone
    assert len(load_manifest(tmp_path / "a.jsonl.gz")) == 3000


def test_every_tenth_of_the_shuffled_union_draws_from_all_of_its_inputs(ordered_inputs, tmp_path):
    write_shuffled_cuts(ordered_inputs, tmp_path / "a.jsonl.gz", seed=0, bucket_cuts=400)
    position = {
        c.id: i for i, c in enumerate(c for p in ordered_inputs for c in CutSet.from_jsonl_lazy(p))
    }
    order = np.array([position[c.id] for c in CutSet.from_jsonl_lazy(tmp_path / "a.jsonl.gz")])
    # Input order: cut k of the output came from anywhere, not from near position k.
    assert abs(np.corrcoef(np.arange(len(order)), order)[0, 1]) < 0.05
    for chunk in np.split(order, 10):  # 300 cuts each
        assert chunk.min() < 0.02 * 3000 and chunk.max() > 0.98 * 3000
        assert abs(chunk.mean() - 1500) < 150
        assert len(set(chunk // 1000)) == 3  # all three files


def test_a_repeated_cut_id_across_buckets_is_found_and_nothing_is_written(ordered_inputs, tmp_path):
    with pytest.raises(ValueError, match=r"1000 cut id\(s\) occur more than once"):
        write_shuffled_cuts(
            [ordered_inputs[0], ordered_inputs[0]], tmp_path / "a.jsonl.gz", bucket_cuts=100
        )
    assert not (tmp_path / "a.jsonl.gz").exists() and not list(tmp_path.glob(".partial*"))


def test_pieces_as_separate_jobs_then_a_join_run_writes_the_unions_and_the_shar(tmp_path):
    from test_reliability_killed_stages import _run

    make_librispeech_part(tmp_path / "c", "train-x", seconds=0.5)
    make_librispeech_part(tmp_path / "c", "train-y", seconds=0.5,
                          texts={"31-300-0000": "A B", "31-300-0001": "C D"})  # fmt: skip
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")
    out = tmp_path / "f"
    args = ["--manifest-dir", tmp_path / "m", "--output-dir", out, "--prefix", "toy",
            "--pretrain-parts", "train-x", "train-y", "--num-pieces", 2]  # fmt: skip
    for piece in (0, 1):  # one job each (here one after the other)
        job = _run("compute_fbank.py", *args, "--piece", piece)
        assert f"Piece {piece} of 2 done" in job.stderr
    assert not list(out.glob("toy_cuts_*"))  # nothing joined yet
    join = _run("compute_fbank.py", *args, "--train-union", "--shar-dir", tmp_path / "shar")
    assert join.stderr.count("finished before, skipping") == 4  # 2 parts x 2 pieces
    train = load_manifest(out / "toy_cuts_train.jsonl.gz")
    pretrain = load_manifest(out / "toy_cuts_pretrain.jsonl.gz")
    assert sorted(c.id for c in train) == sorted(c.id for c in pretrain) and len(train) == 5
    assert len(list((tmp_path / "shar").glob("features.*.tar"))) == 1


def test_a_device_other_than_cpu_or_an_available_gpu_is_refused_by_name(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    root = Path(__file__).resolve().parents[1]
    devices = ["tpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        out = subprocess.run(
            [sys.executable, str(root / "local/compute_fbank.py"), "--prefix", "x", "--device", device,
             "--manifest-dir", str(tmp_path)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        assert out.returncode != 0 and f"--device {device}: expected cpu or cuda[:N]" in out.stderr
