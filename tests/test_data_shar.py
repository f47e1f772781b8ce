"""Shar as training input: stage 2's Shar (features or audio) reads back to the same features
as the cuts file, and a resumed epoch over Shar yields exactly the uninterrupted run's batches."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
from data_fixtures import make_librilight_part, make_librispeech_part
from lhotse import CutSet
from lhotse.dataset import OnTheFlyFeatures

from w2vbert.data.fbank import fbank_extractor
from w2vbert.data.sampling import (
    DataConfig,
    create_sampler,
    load_cuts,
    sampler_state_dict,
)
from w2vbert.data.shar import SharSampler, shar_source
from w2vbert.prep.compute_features import (
    compute_fbank_part,
    training_cut_filter,
)
from w2vbert.prep.cut_unions import write_pretrain_cuts
from w2vbert.prep.manifests import prepare_manifests
from w2vbert.prep.shar_export import write_shar

pytestmark = pytest.mark.filterwarnings("ignore:Your 'buffer_size' setting")


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    """Stage 2's shuffled pre-training cuts of 3 + 8 cuts, and their Shar (features, 2 per shard)."""
    tmp = tmp_path_factory.mktemp("shar")
    make_librispeech_part(tmp / "c", "train-x", seconds=1.0)
    make_librilight_part(tmp / "c", "unlab-x", num_files=4)
    prepare_manifests(tmp / "c", tmp / "m", "toy")
    for part in ("train-x", "unlab-x"):
        compute_fbank_part(tmp / "m", tmp / "f", "toy", part, length_filter=training_cut_filter())
    cuts = write_pretrain_cuts(tmp / "f", "toy", ["train-x", "unlab-x"], seed=1)
    return cuts, write_shar(cuts, tmp / "shar", shard_size=2)


def test_shar_with_features_reads_back_the_stored_features_within_lilcom_precision(pretrain):
    cuts_path, shar = pretrain
    want = {c.id: c.load_features() for c in CutSet.from_file(cuts_path)}
    got = load_cuts(shar, "--train-cuts", needs_features=True)
    assert shar_source(got) is not None and len(list(shar.glob("features.*.tar"))) == 6
    seen = {c.id: c for c in got}
    assert seen.keys() == want.keys()
    for cut_id, cut in seen.items():
        assert cut.features.type == "kaldifeat-fbank"
        # Shar's lilcom writer re-encodes: equal within the stored lilcom precision (2**-6)
        np.testing.assert_allclose(cut.load_features(), want[cut_id], rtol=0, atol=2**-6 + 1e-4)
    scanned = load_cuts(shar, "--train-cuts", manifest_only=True)  # no tar read
    assert sorted(c.id for c in scanned) == sorted(want)


def test_audio_only_shar_gives_the_on_the_fly_features_of_the_cuts_file(pretrain, tmp_path):
    cuts_path, _ = pretrain
    shar = write_shar(cuts_path, tmp_path / "audio", fields="audio", shard_size=4)
    assert sorted({p.name.split(".")[0] for p in shar.iterdir()}) == ["cuts", "recording"]
    with pytest.raises(
        ValueError,
        match=r"--train-cuts .*audio: the Shar shards hold \['recording'\] but no features; train with --on-the-fly-feats",
    ):
        load_cuts(shar, "--train-cuts", needs_features=True)
    fbank = OnTheFlyFeatures(fbank_extractor())
    from_file = CutSet.from_cuts(
        sorted(CutSet.from_file(cuts_path).drop_features(), key=lambda c: c.id)
    )
    from_shar = CutSet.from_cuts(sorted(load_cuts(shar, "--train-cuts"), key=lambda c: c.id))
    assert [c.id for c in from_file] == [c.id for c in from_shar]
    (a, a_lens), (b, b_lens) = fbank(from_file), fbank(from_shar)
    assert a_lens.tolist() == b_lens.tolist()
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # 16-bit FLAC of 16-bit FLAC: lossless


def test_an_up_to_date_shar_directory_is_skipped(pretrain, caplog):
    cuts_path, shar = pretrain
    stamp = (shar / "cuts.000000.jsonl.gz").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        write_shar(cuts_path, shar, shard_size=2)
    assert "is up to date" in caplog.text
    assert (shar / "cuts.000000.jsonl.gz").stat().st_mtime_ns == stamp


def _ids(batches) -> list[list[str]]:
    return [sorted(c.id for c in b) for b in batches]


def test_a_resumed_epoch_over_shar_yields_the_uninterrupted_batches(pretrain):
    _, shar = pretrain
    config = DataConfig(max_duration=3.0, num_buckets=2)

    def sampler() -> SharSampler:
        cuts = load_cuts(shar, "--train-cuts").filter(
            lambda c: c.duration > 0
        )  # as the runner does
        s = create_sampler(cuts, config, train=True, seed=5)
        assert isinstance(s, SharSampler)
        return s

    full = sampler()
    epochs = []
    for epoch in range(3):
        full.set_epoch(epoch)
        epochs.append(_ids(full))
    assert len(epochs[1]) >= 4
    # The shard order (and with it the batches) changes with the epoch, a function of it.
    assert len({str(e) for e in epochs}) == 3
    for k in (1, len(epochs[1]) - 1):  # interrupted after k batches of epoch 1
        first = sampler()
        first.set_epoch(1)
        it = iter(first)
        head = _ids(next(it) for _ in range(k))
        state = copy.deepcopy(sampler_state_dict(first, k))
        resumed = sampler()
        resumed.load_state_dict(state)
        assert head + _ids(resumed) == epochs[1]
        resumed.set_epoch(2)
        assert _ids(resumed) == epochs[2]  # and the next epoch as well


def test_pretraining_over_audio_only_shar_stopped_mid_epoch_resumes_to_the_same_model(tmp_path):
    import tiny_corpus
    import torch

    from w2vbert import pretrain

    train = tiny_corpus.make_cuts(tmp_path, "train", 8)
    shar = write_shar(train, tmp_path / "shar", fields="audio", shard_size=2)

    def run(exp_dir, *extra: str) -> None:
        pretrain.main(["--train-cuts", str(shar), "--on-the-fly-feats", "--model-preset", "tiny",
                       "--exp-dir", str(exp_dir), "--max-duration", "4", "--num-buckets", "2",
                       "--warmup-steps", "5", "--save-every-n", "2", "--device", "cpu",
                       "--num-epochs", "2", *extra])  # fmt: skip

    run(tmp_path / "straight")
    first_epoch = torch.load(tmp_path / "straight" / "epoch-1.pt", weights_only=False)
    stop = first_epoch["batch_idx_train"] + 1  # 1 batch into epoch 2: Lhotse's own shard
    run(tmp_path / "resumed", "--max-steps", str(stop))  # counter would say epoch 0 there
    assert (tmp_path / "resumed" / f"checkpoint-{stop}.pt").is_file()
    run(tmp_path / "resumed")
    a, b = (
        torch.load(tmp_path / d / "epoch-2.pt", weights_only=False) for d in ("straight", "resumed")
    )
    assert a["batch_idx_train"] == b["batch_idx_train"] >= 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_under_ddp_each_rank_reads_only_its_own_shards_and_too_few_shards_are_refused(pretrain, monkeypatch):
    _, shar = pretrain  # 11 cuts in 6 shards of <= 2
    every = sorted(c.id for c in load_cuts(shar, "--train-cuts"))
    seen = []
    for rank in (0, 1, 2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        seen.append([c.id for c in load_cuts(shar, "--train-cuts", split_by_rank=True)])
    assert all(2 <= len(ids) <= 4 for ids in seen)  # two shards each
    assert sorted(i for ids in seen for i in ids) == every  # together: each cut once
    monkeypatch.setenv("WORLD_SIZE", "7")
    with pytest.raises(ValueError, match=r"6 Shar shard\(s\) for 7 ranks: each rank reads its own"):
        load_cuts(shar, "--train-cuts", split_by_rank=True)
