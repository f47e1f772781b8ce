"""Stage 2 (fbank): stored features against kaldifeat and Lhotse's Fbank, resampling, downmix,
length filter, speed perturbation, pre-training union, bad audio and unfinished runs."""

import logging
import shutil
from types import SimpleNamespace

import kaldifeat
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from data_fixtures import make_librilight_part, make_librispeech_part
from lhotse import Fbank, load_manifest

from w2vbert.model.feature_encoder import FbankFeatureEncoder, output_lengths
from w2vbert.prep import compute_features as cf
from w2vbert.prep.compute_features import (
    FeatureError,
    compute_fbank_part,
    training_cut_filter,
)
from w2vbert.prep.cut_unions import write_pretrain_cuts
from w2vbert.prep.espeak import resample
from w2vbert.prep.manifests import prepare_manifests

# LilcomChunkyWriter stores with tick_power -5: values are rounded to multiples of 2**-5.
LILCOM_ATOL = 2**-6 + 1e-4


def kaldifeat_direct(samples: np.ndarray) -> np.ndarray:
    """kaldifeat with the recipe's options set by hand (not through Lhotse): (T, 80)."""
    opts = kaldifeat.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = -400.0
    return kaldifeat.Fbank(opts)(torch.from_numpy(samples.astype(np.float32))).numpy()


def _stage12(tmp_path, part, **kwargs):
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", [part])
    kwargs.setdefault("length_filter", training_cut_filter())
    path = compute_fbank_part(tmp_path / "m", tmp_path / "f", "toy", part, **kwargs)
    return load_manifest(path)


@pytest.fixture(scope="module")
def toy_cuts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fbank")
    make_librispeech_part(tmp / "c", "train-x", seconds=1.3)
    return _stage12(tmp, "train-x")


def test_stored_features_equal_kaldifeat_on_the_audio_within_lilcom_precision(toy_cuts):
    for cut in toy_cuts:
        audio, rate = sf.read(cut.recording.sources[0].source, dtype="float32")
        want = kaldifeat_direct(audio)
        got = cut.load_features()
        assert rate == 16000 and got.shape == want.shape == (130, 80)
        assert np.abs(got - want).max() <= LILCOM_ATOL


def test_recipe_fbank_agrees_with_lhotse_fbank_to_1e_2(toy_cuts):
    # Lhotse's own (torch) Fbank with its defaults; measured max |diff| ~1e-3 here.
    for cut in toy_cuts:
        audio = cut.load_audio()[0]
        diff = np.abs(kaldifeat_direct(audio) - Fbank().extract(audio, 16000))
        assert diff.max() < 1e-2


def test_cuts_carry_text_speaker_and_80_dim_features(toy_cuts):
    cut = toy_cuts[0]
    assert cut.supervisions[0].text == "HELLO THERE MY FRIEND"
    assert cut.num_features == 80 and cut.features.storage_type == "lilcom_chunky"


def test_output_lengths_matches_the_feature_encoder_output_length():
    enc = FbankFeatureEncoder(model_dim=8, num_channels=2).eval()
    for num_frames in range(1, 14):
        with torch.no_grad():
            out, lens = enc(torch.randn(1, num_frames, 80), torch.tensor([num_frames]))
        assert out.shape[1] == int(lens[0]) == int(output_lengths(num_frames))


def test_length_filter_reasons():
    f = training_cut_filter(min_duration=0.3, max_duration=5.0)

    def cut(duration: float) -> SimpleNamespace:  # a cut before stage 2: no features yet
        return SimpleNamespace(id="c", duration=duration, has_features=False, sampling_rate=16000)

    assert f.reason(cut(0.001)) == "fewer than 1 encoder step"
    assert f.reason(cut(0.2)) == "shorter than 0.3 s"
    assert f.reason(cut(6.0)) == "longer than 5.0 s"
    assert f.reason(cut(1.0)) is None


def test_short_cuts_are_dropped_from_training_parts_with_a_logged_count(tmp_path, caplog):
    make_librispeech_part(tmp_path / "c", "train-x", seconds=0.2)
    make_librispeech_part(tmp_path / "c", "dev-x", seconds=0.2)
    with caplog.at_level(logging.INFO), pytest.raises(FeatureError, match="no cut is left"):
        _stage12(tmp_path, "train-x")
    assert "Part train-x: kept 0 of 3 cuts; dropped: 3 shorter than 0.3 s" in caplog.text
    assert not (tmp_path / "f" / "toy_cuts_train-x.jsonl.gz").exists()
    assert len(_stage12(tmp_path, "dev-x", length_filter=None)) == 3  # eval parts keep them


def test_non_16khz_audio_is_resampled_to_16khz_features(tmp_path, caplog):
    make_librispeech_part(tmp_path / "c", "train-x", seconds=1.0, sampling_rate=22050)
    with caplog.at_level(logging.WARNING):
        cuts = _stage12(tmp_path, "train-x")
    assert "resampling 3 cut(s) from [22050] Hz to 16000 Hz" in caplog.text
    for cut in cuts:
        audio, _ = sf.read(cut.recording.sources[0].source, dtype="float32")
        got = cut.load_features()
        assert cut.sampling_rate == 16000 and got.shape == (100, 80)
        # Exactly Lhotse's resampler (scipy's polyphase filter) followed by kaldifeat:
        exact = kaldifeat_direct(scipy.signal.resample_poly(audio, 320, 441).astype(np.float32))
        assert np.abs(got - exact).max() <= LILCOM_ATOL
        # An independent resampler (FFT, ideal low-pass): the filters differ in their roll-off
        # above ~6.5 kHz and in edge ringing, so compare the mean over the bins below it.
        other = kaldifeat_direct(resample(audio, 22050, 16000))
        assert np.abs(got[:, :70] - other[:, :70]).mean() < 0.02


def test_stereo_audio_is_downmixed_to_the_mean_of_its_channels(tmp_path, caplog):
    paths = make_librispeech_part(tmp_path / "c", "train-x", seconds=1.0, channels=2)
    with caplog.at_level(logging.WARNING):
        cuts = _stage12(tmp_path, "train-x")
    assert "downmixing 3 multi-channel recording(s) to mono copies" in caplog.text
    for cut in cuts:
        assert cut.num_channels == 1 and "toy_feats_train-x/mono" in cut.recording.sources[0].source
        stereo, _ = sf.read(paths[cut.id], dtype="float32")
        assert stereo.shape == (16000, 2)
        # The mono copy is the channel mean stored as 16-bit PCM (rounding matters in the
        # log of nearly empty low mel bins, so it is part of the reference).
        mean16 = np.round(stereo.mean(axis=1) * 32768) / 32768
        want = kaldifeat_direct(mean16.astype(np.float32))
        assert np.abs(cut.load_features() - want).max() <= LILCOM_ATOL


def test_speed_perturbation_adds_copies_left_out_of_the_pretraining_union(tmp_path):
    make_librispeech_part(tmp_path / "c", "train-x", seconds=1.0)
    make_librilight_part(tmp_path / "c", "unlab-x")
    cuts = _stage12(tmp_path, "train-x", speed_perturb=True)
    by_id = {c.id: c for c in cuts}
    assert len(cuts) == 9
    assert by_id["11-100-0000_sp0.9"].duration == pytest.approx(1.0 / 0.9, abs=0.01)
    assert by_id["11-100-0000_sp1.1"].load_features().shape[0] == round(100 / 1.1)
    vad = _stage12(tmp_path, "unlab-x")
    assert len(vad) == 4 and {round(c.duration, 3) for c in vad} == {1.1, 1.4}
    union = load_manifest(write_pretrain_cuts(tmp_path / "f", "toy", ["unlab-x", "train-x"]))
    assert sorted(c.id for c in union) == sorted(
        [c.id for c in vad] + ["11-100-0000", "11-100-0001", "12-200-0000"]
    )


def test_audio_missing_at_stage_2_is_an_error_naming_the_recording(tmp_path):
    paths = make_librispeech_part(tmp_path / "c", "train-x")
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["train-x"])
    paths["11-100-0001"].unlink()
    with pytest.raises(
        FeatureError, match=r"recording 11-100-0001: audio file .*11-100-0001\.flac does not exist"
    ):
        compute_fbank_part(
            tmp_path / "m", tmp_path / "f", "toy", "train-x", length_filter=training_cut_filter()
        )
    assert not (tmp_path / "f" / "toy_cuts_train-x.jsonl.gz").exists()


def test_audio_corrupted_after_stage_1_is_an_error_naming_the_cut_and_a_rerun_recovers(tmp_path):
    paths = make_librispeech_part(tmp_path / "c", "train-x")
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["train-x"])
    good = paths["12-200-0000"].read_bytes()
    paths["12-200-0000"].write_bytes(b"garbage" * 100)
    args = (tmp_path / "m", tmp_path / "f", "toy", "train-x")
    with pytest.raises(FeatureError, match=r"cut 12-200-0000: .*12-200-0000\.flac"):
        compute_fbank_part(*args, length_filter=training_cut_filter())
    out = tmp_path / "f"
    assert not (out / "toy_cuts_train-x.jsonl.gz").exists() and not list(out.glob(".partial*"))
    paths["12-200-0000"].write_bytes(good)
    cuts = load_manifest(compute_fbank_part(*args, length_filter=training_cut_filter()))
    assert len(cuts) == 3 and all(c.load_features().shape == (100, 80) for c in cuts)


def test_a_killed_run_leaves_nothing_finished_looking_and_the_next_run_redoes_the_part(
    tmp_path, monkeypatch
):
    make_librispeech_part(tmp_path / "c", "train-x")
    prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["train-x"])
    out = tmp_path / "f"
    # Interrupted while writing the cuts file (after the features were stored).
    real = cf.CutSet.to_file

    def interrupted(self, path):
        real(self, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(cf.CutSet, "to_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compute_fbank_part(tmp_path / "m", out, "toy", "train-x", length_filter=training_cut_filter())
    monkeypatch.undo()
    assert (out / "toy_feats_train-x").is_dir()  # features of the unfinished run...
    assert not (out / "toy_cuts_train-x.jsonl.gz").exists()  # ...but no cuts file
    assert not list(out.glob(".partial*"))
    stale = out / "toy_feats_train-x" / "stale.lca"
    stale.write_bytes(b"x")
    compute_fbank_part(tmp_path / "m", out, "toy", "train-x", length_filter=training_cut_filter())
    assert not stale.exists() and (out / "toy_cuts_train-x.jsonl.gz").is_file()


def test_missing_manifests_are_an_error_naming_the_file(tmp_path):
    with pytest.raises(FeatureError, match=r"toy_recordings_dev-x\.jsonl\.gz does not exist"):
        compute_fbank_part(tmp_path, tmp_path / "f", "toy", "dev-x", length_filter=None)
    shutil.rmtree(tmp_path / "f", ignore_errors=True)


def test_w2v_bert_2_fbank_is_stored_with_its_type_and_a_part_of_the_other_kind_is_refused(tmp_path):
    from transformers import SeamlessM4TFeatureExtractor

    make_librispeech_part(tmp_path / "c", "train-x", seconds=1.3)
    cuts = _stage12(tmp_path, "train-x", fbank="w2v-bert-2.0")
    reference = SeamlessM4TFeatureExtractor()
    for cut in cuts:
        assert cut.features.type == "w2v-bert-2.0-fbank"
        audio, _ = sf.read(cut.recording.sources[0].source, dtype="float32")
        stored = torch.from_numpy(cut.load_features())  # 2 normalisation-neutral frames at the end
        assert stored.shape[0] == cut.num_frames
        ref = reference(audio, sampling_rate=16000, do_normalize_per_mel_bins=False)["input_features"][0]
        raw = np.asarray(ref).reshape(-1, 80)  # un-normalised frames, stacked in pairs
        n = raw.shape[0]
        np.testing.assert_allclose(stored[:n].numpy(), raw, atol=LILCOM_ATOL + 1e-3)
    with pytest.raises(FeatureError, match="fbank 'w2v-bert-2.0'.*expects fbank 'icefall'"):
        compute_fbank_part(tmp_path / "m", tmp_path / "f", "toy", "train-x", length_filter=None)
