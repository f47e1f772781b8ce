"""Issue 9, bad input not covered elsewhere: very short/long and 8 kHz audio at stage 2, an
unknown option to every stage CLI, and run.sh's stage 5 without stage 4's checkpoint.

(Corrupt/empty/missing audio, transcripts, stereo and 22.05 kHz: tests/test_data_manifests.py and
tests/test_data_fbank.py; --init-from problems: tests/test_finetune_cli.py.)
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import kaldifeat
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from data_fixtures import make_librispeech_part, signal, write_flac
from lhotse import load_manifest

from w2vbert.data.filters import CutFilter
from w2vbert.prep.compute_features import compute_fbank_part, training_cut_filter
from w2vbert.prep.espeak import resample
from w2vbert.prep.manifests import prepare_manifests

REPO = Path(__file__).resolve().parents[1]
LILCOM_ATOL = 2**-6 + 1e-4  # LilcomChunkyWriter rounds to multiples of 2**-5


def _kaldifeat(samples: np.ndarray) -> np.ndarray:
    """The recipe's fbank options set by hand on kaldifeat (not through Lhotse): (T, 80)."""
    opts = kaldifeat.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = -400.0
    return kaldifeat.Fbank(opts)(torch.from_numpy(samples.astype(np.float32))).numpy()


def _stage12(root: Path, part: str, length_filter: "CutFilter | None"):
    prepare_manifests(root / "c", root / "m", "toy", [part])
    return load_manifest(
        compute_fbank_part(root / "m", root / "f", "toy", part, length_filter=length_filter)
    )


def test_0_1_s_and_60_s_audio_are_dropped_from_training_with_a_logged_count_and_kept_for_eval(
    tmp_path, caplog
):
    for part in ("train-x", "dev-x"):
        paths = make_librispeech_part(tmp_path / "c", part, seconds=1.0)
        write_flac(paths["11-100-0000"], signal(0.1))
        write_flac(paths["11-100-0001"], signal(60.0))
    with caplog.at_level(logging.INFO):
        train = _stage12(tmp_path, "train-x", training_cut_filter())
    assert [c.id for c in train] == ["12-200-0000"]
    assert (
        "Part train-x: kept 1 of 3 cuts; dropped: 1 longer than 30.0 s, 1 shorter than 0.3 s"
        in caplog.text
    )
    dev = {c.id: c for c in _stage12(tmp_path, "dev-x", None)}  # dev/test: no length filter
    assert dev["11-100-0000"].load_features().shape == (10, 80)
    assert dev["11-100-0001"].load_features().shape == (6000, 80)


def test_8_khz_audio_is_upsampled_to_16_khz_features_with_a_warning(tmp_path, caplog):
    make_librispeech_part(tmp_path / "c", "train-x", seconds=1.0, sampling_rate=8000)
    with caplog.at_level(logging.WARNING):
        cuts = _stage12(tmp_path, "train-x", training_cut_filter())
    assert "Part train-x: resampling 3 cut(s) from [8000] Hz to 16000 Hz" in caplog.text
    for cut in cuts:
        audio, rate = sf.read(cut.recording.sources[0].source, dtype="float32")
        got = cut.load_features()
        assert rate == 8000 and cut.sampling_rate == 16000 and got.shape == (100, 80)
        # Lhotse's resampler is scipy's polyphase filter (up 2, down 1): exact up to lilcom.
        exact = _kaldifeat(scipy.signal.resample_poly(audio, 2, 1).astype(np.float32))
        assert np.abs(got - exact).max() <= LILCOM_ATOL
        # An independent (FFT) resampler agrees in the mel bins below 4 kHz (bin ~61); above
        # it the 8 kHz audio has no energy and the log of ~0 depends on the filter's leakage.
        other = _kaldifeat(resample(audio, 8000, 16000))
        assert np.abs(got[:, :55] - other[:, :55]).mean() < 0.02


CLIS = [
    ["local/make_mini_corpus.py"],
    ["local/download_librispeech.py"],
    ["local/prepare_manifests.py", "--corpus-dir", "c", "--prefix", "p"],
    ["local/compute_fbank.py", "--prefix", "p"],
    ["local/train_bpe.py", "--text", "t.txt", "--lang-dir", "lang"],
    ["-m", "w2vbert.pretrain"],
    ["-m", "w2vbert.finetune"],
    ["-m", "w2vbert.decode", "--cuts", "test=cuts.jsonl.gz"],
    ["-m", "w2vbert.average", "--exp-dir", "exp", "--epoch", "2"],
    ["-m", "w2vbert.export_onnx"],
]


@pytest.mark.parametrize("cli", CLIS, ids=[c[0] if c[0] != "-m" else c[1] for c in CLIS])
def test_unknown_option_exits_2_naming_it_and_writes_nothing(cli, tmp_path):
    # Required options are given so that the unknown one is the only problem.
    cmd = [sys.executable, *[str(REPO / a) if a.startswith("local/") else a for a in cli]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*cmd, "--no-such-option", "1"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: unrecognized arguments: --no-such-option 1" in proc.stderr
    assert not list(tmp_path.iterdir())  # no log, no output directory


def test_run_sh_stage_5_without_stage_4_checkpoint_fails_naming_the_missing_epoch_file(tmp_path):
    if not (Path(sys.prefix) / ".w2vbert-setup-done").is_file():
        pytest.skip("needs the recipe's set-up venv (path.sh would set one up)")
    exp = tmp_path / "exp"
    proc = subprocess.run(
        ["./run.sh", "--stage", "5", "--stop-stage", "5", "--pretrain-epochs", "3",
         "--exp-dir", str(exp), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env={**os.environ, "W2VBERT_VENV": sys.prefix},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"error: --init-from {exp}/pretrain/epoch-3.pt does not exist" in out
    assert "stage 5 (finetune) failed after" in out and "stage-5-finetune.log" in out
    assert not (exp / "log" / "stage-5-finetune.done").exists()
    assert not (exp / "finetune").exists()


def test_the_same_utterance_twice_in_the_pretraining_union_is_an_error(tmp_path):
    from lhotse import CutSet
    from lhotse.testing.dummies import dummy_cut

    from w2vbert.prep.compute_features import FeatureError
    from w2vbert.prep.cut_unions import write_pretrain_cuts

    for part in ("a", "b"):
        CutSet.from_cuts([dummy_cut(i) for i in (0, 1)]).to_file(
            tmp_path / f"x_cuts_{part}.jsonl.gz"
        )
    with pytest.raises(FeatureError, match=r"Pre-training parts a b: 2 cut id\(s\) occur more"):
        write_pretrain_cuts(tmp_path, "x", ["a", "b"])
    assert not (tmp_path / "x_cuts_pretrain.jsonl.gz").exists()


def test_stage_2_cuts_work_from_any_working_directory(tmp_path, monkeypatch):
    make_librispeech_part(tmp_path / "c", "dev-x")
    monkeypatch.chdir(tmp_path)
    _stage12(Path("."), "dev-x", None)  # relative --output-dir, as run.sh gives it
    monkeypatch.chdir(tmp_path / "c")  # somewhere else: another recipe's directory
    cut = next(iter(load_manifest(tmp_path / "f" / "toy_cuts_dev-x.jsonl.gz")))
    assert Path(cut.features.storage_path).is_absolute()
    assert cut.load_features().shape[1] == 80


def test_a_busy_master_port_is_replaced_by_a_free_one(caplog):
    import socket

    from w2vbert.training.ddp import _free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.WARNING):
            assert _free_port(port) != port
    assert f"--master-port {port} is in use" in caplog.text


def test_a_nan_cut_in_the_dev_set_is_left_out_of_validation_with_a_warning(tmp_path, caplog):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import toy_training

    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path / "exp"))
    trainer.valid_dl.dataset.nan_cuts = frozenset({"valid-0"})
    with caplog.at_level(logging.WARNING):
        values = trainer.validate()
    assert values and all(np.isfinite(v) for v in values.values())
    assert "Validation: batches with a non-finite loss left out of the averages" in caplog.text
    assert "'valid-0'" in caplog.text


def test_a_truncated_cuts_file_is_an_error_naming_it(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_corpus

    from w2vbert import pretrain

    train = tiny_corpus.make_cuts(tmp_path / "c", "train", 6)
    data = train.read_bytes()
    train.write_bytes(data[: len(data) // 2])
    argv = ["--train-cuts", str(train), "--model-preset", "tiny", "--exp-dir", str(tmp_path / "e"),
            "--max-duration", "4", "--num-buckets", "2", "--device", "cpu", "--no-tensorboard"]  # fmt: skip
    with pytest.raises(
        ValueError, match=rf"--train-cuts {train}: cannot read the cuts .*truncated"
    ):
        pretrain.main(argv)
    assert not list((tmp_path / "e").glob("*.pt"))


def test_an_empty_part_directory_is_a_warning_in_stage_1(tmp_path, caplog):
    make_librispeech_part(tmp_path / "c", "dev-x")
    (tmp_path / "c" / "unlab-x").mkdir()  # a Libri-Light download that left nothing
    with caplog.at_level(logging.INFO):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Ignoring" in r.getMessage() and "unlab-x" in r.getMessage() for r in warnings)


def test_lower_case_or_punctuated_transcripts_are_a_warning_with_a_count(tmp_path, caplog):
    from w2vbert.prep.manifests import check_librispeech_part

    make_librispeech_part(
        tmp_path / "c", "dev-x", texts={"11-100-0000": "Hello, world", "11-100-0001": "FINE TEXT"}
    )
    with caplog.at_level(logging.WARNING):
        assert not check_librispeech_part(tmp_path / "c" / "dev-x")
    assert "1 transcript(s) have characters other than A-Z, apostrophe and space" in caplog.text
    assert "11-100-0000: 'Hello, world'" in caplog.text


def test_a_cut_in_both_a_training_and_a_dev_part_is_a_warning(tmp_path, caplog):
    from lhotse import CutSet
    from lhotse.testing.dummies import dummy_cut

    from w2vbert.prep.cut_unions import warn_shared_ids

    for part, ids in (("train-a", (0, 1, 2)), ("dev-a", (2, 3))):
        CutSet.from_cuts([dummy_cut(i) for i in ids]).to_file(tmp_path / f"x_cuts_{part}.jsonl.gz")
    with caplog.at_level(logging.WARNING):
        assert warn_shared_ids(tmp_path, "x", ["train-a"], ["dev-a"]) == 1
    assert "1 cut id(s) are in a training part (train-a) and a dev/test part (dev-a)" in caplog.text


def test_a_truncated_feature_file_names_the_cuts_and_saves_the_failed_batch(tmp_path):
    from w2vbert.data.datasets import BatchLoadError, PretrainDataset

    make_librispeech_part(tmp_path / "c", "dev-x")
    cuts = _stage12(tmp_path, "dev-x", None)
    feats = next((tmp_path / "f" / "toy_feats_dev-x").rglob("*.lca"))
    feats.write_bytes(feats.read_bytes()[:100])
    with pytest.raises(BatchLoadError, match=r"Reading the features of cuts \['11-100-0000'") as e:
        PretrainDataset()[cuts.subset(first=1)]
    assert e.value.cut_ids == ["11-100-0000"]

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import toy_training

    trainer = toy_training.build_trainer(toy_training.toy_config(tmp_path / "exp"))

    def unreadable(cuts):
        raise BatchLoadError([c.id for c in cuts], "OSError: truncated")

    trainer.train_dl.dataset.__class__ = type(
        "Unreadable",
        (type(trainer.train_dl.dataset),),
        {"__getitem__": lambda self, c: unreadable(c)},
    )
    with pytest.raises(BatchLoadError):
        trainer.train()
    saved = list((tmp_path / "exp").glob("failed-batch-1-rank0.json"))
    assert saved and "OSError: truncated" in saved[0].read_text()
