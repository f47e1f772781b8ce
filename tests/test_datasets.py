"""Datasets, cut filters and the sampler (DDP sharding, restorable position)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402
import toy_training  # noqa: E402

from w2vbert.data.datasets import (
    AsrDataset,
    PretrainDataset,
    create_spec_augment,
)  # noqa: E402
from w2vbert.data.filters import CutFilter, scan  # noqa: E402
from w2vbert.data.sampling import DataConfig, create_sampler, sampler_state_dict  # noqa: E402
from w2vbert.data.tokenizer import BpeTokenizer
from w2vbert.model.feature_encoder import output_lengths  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return CutSet.from_file(tiny_corpus.make_cuts(root, "c", 4)).to_eager(), tiny_corpus.make_bpe(
        root
    )


def test_pretrain_batch_has_padded_features_lengths_and_ids(corpus):
    cuts, _ = corpus
    batch = PretrainDataset()[cuts]
    n = len(cuts)
    assert batch["features"].shape[0] == n and batch["features"].shape[2] == 80
    assert batch["feature_lens"].dtype == torch.int64
    assert int(batch["feature_lens"].max()) == batch["features"].shape[1]
    assert batch["feature_lens"].tolist() == sorted(batch["feature_lens"].tolist(), reverse=True)
    assert sorted(batch["cut_ids"]) == sorted(c.id for c in cuts)
    first = cuts[batch["cut_ids"][0]]
    assert torch.allclose(
        batch["features"][0, : batch["feature_lens"][0]], torch.from_numpy(first.load_features())
    )


def test_asr_batch_tokenizes_the_transcripts(corpus):
    cuts, bpe = corpus
    tok = BpeTokenizer(bpe)
    batch = AsrDataset(tok)[cuts]
    assert batch["texts"] == [cuts[i].supervisions[0].text for i in batch["cut_ids"]]
    assert [tok.sp.decode(t) for t in batch["tokens"]] == batch["texts"]
    assert all(0 not in t for t in batch["tokens"])  # no blank inside the targets


def test_spec_augment_masks_only_training_features(corpus):
    cuts, bpe = corpus
    torch.manual_seed(0)
    plain = AsrDataset(BpeTokenizer(bpe))[cuts]["features"]
    augmented = AsrDataset(BpeTokenizer(bpe), spec_augment=create_spec_augment(True))[cuts][
        "features"
    ]
    assert plain.shape == augmented.shape and not torch.equal(plain, augmented)
    assert create_spec_augment(False) is None


def test_spec_augment_settings_reach_lhotse_and_time_masks_scale_with_the_utterance():
    spec = create_spec_augment(True, time_warp_factor=20, num_feature_masks=1,
                               features_mask_size=10, num_frame_masks=4, frames_mask_size=30,
                               max_frames_mask_fraction=0.1)  # fmt: skip
    assert (spec.time_warp_factor, spec.num_feature_masks, spec.features_mask_size,
            spec.num_frame_masks, spec.frames_mask_size, spec.max_frames_mask_fraction) == (
        20, 1, 10, 4, 30, 0.1)  # fmt: skip
    # no warp, no mel masks: only time masks, which cover <= 10 % of a 270-frame utterance
    spec = create_spec_augment(True, time_warp_factor=0, num_feature_masks=0,
                               num_frame_masks=4, frames_mask_size=30,
                               max_frames_mask_fraction=0.1)  # fmt: skip
    torch.manual_seed(0)
    features = torch.randn(200, 270, 80)
    diff = spec(features.clone()) != features  # (N, T, F)
    masked, changed = diff.all(dim=2), diff.any(dim=2)  # (N, T): whole frames / any bin
    assert torch.equal(masked, changed)  # nothing but whole frames moved (no warp, no mel mask)
    assert masked.sum(dim=1).max() <= 27 and masked.any()
    for name, value in [("time_warp_factor", -1), ("num_frame_masks", 0), ("frames_mask_size", 0),
                        ("max_frames_mask_fraction", 0.0), ("max_frames_mask_fraction", 1.0)]:  # fmt: skip
        with pytest.raises(ValueError, match=f"SpecAugment {name} must be"):
            create_spec_augment(True, **{name: value})


def test_filter_drops_short_cuts_and_cuts_with_more_tokens_than_steps(corpus, caplog):
    cuts, bpe = corpus
    tok = BpeTokenizer(bpe)
    f = CutFilter(frames_to_steps=lambda t: int(output_lengths(t, 4)), min_steps=1, tokenize=tok)
    assert all(f(c) for c in cuts)
    short = cuts[0].truncate(duration=0.05)  # 5 frames -> 2 steps < tokens of the transcript
    assert f.reason(short) == "more tokens than encoder steps"
    assert (
        CutFilter(frames_to_steps=lambda t: t // 4, min_steps=30).reason(cuts[0])
        == "fewer than 30 encoder steps"
    )
    f2 = CutFilter(frames_to_steps=lambda t: t // 4, max_duration=1.0)
    with caplog.at_level(logging.INFO):
        kept, seconds = scan(cuts, f2, "test")
    expected = [c for c in cuts if c.duration <= 1.0]
    assert kept == len(expected) == 2 and seconds == pytest.approx(
        sum(c.duration for c in expected)
    )
    assert "test: kept 2/4 cuts" in caplog.text and "2 longer than 1.0 s" in caplog.text


def test_sampler_shards_batches_by_rank():
    cuts = toy_training.toy_cuts(24)
    data = DataConfig(max_duration=3.0, num_buckets=2, drop_last=True)
    ids = []
    for rank in (0, 1):
        s = create_sampler(cuts, data, train=True, world_size=2, rank=rank, seed=3)
        s.set_epoch(1)
        ids.append({c.id for batch in s for c in batch})
    assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_sampler_state_restores_the_position_even_when_the_sampler_ran_ahead():
    cuts = toy_training.toy_cuts(40)
    data = DataConfig(max_duration=3.0, num_buckets=2)
    s = create_sampler(cuts, data, train=True, seed=5)
    s.set_epoch(2)
    it = iter(s)
    batches = [[c.id for c in next(it)] for _ in range(5)]
    state = sampler_state_dict(s, num_consumed=3)  # 2 batches were only prefetched
    restored = create_sampler(cuts, data, train=True, seed=5)
    restored.load_state_dict(state)
    it2 = iter(restored)
    assert [[c.id for c in next(it2)] for _ in range(2)] == batches[3:5]


def test_data_config_reports_problems():
    with pytest.raises(ValueError, match="(?s)max_duration.*num_buckets"):
        DataConfig(max_duration=0, num_buckets=1)


def test_on_the_fly_features_match_the_recipe_fbank_shape(corpus):
    pytest.importorskip("kaldifeat")
    from w2vbert.data.datasets import create_input_strategy

    cuts, _ = corpus
    batch = PretrainDataset(create_input_strategy(on_the_fly_feats=True))[cuts]
    stored = PretrainDataset()[cuts]
    assert batch["features"].shape[2] == 80
    assert batch["cut_ids"] == stored["cut_ids"]
    # same frame counts as the stored features (lhotse Fbank with snip_edges=False), +-1 frame
    assert (batch["feature_lens"] - stored["feature_lens"]).abs().max() <= 1
