"""w2v-BERT 2.0 through the recipe's own features, at the real width: stage 2's stored fbank and
the on-the-fly fbank give the ``--init-from`` encoder what transformers'
``SeamlessM4TFeatureExtractor`` gives ``Wav2Vec2BertModel``; stage 6 (stored features) and stage
7's sherpa-onnx check (fbank from the samples) give the encoder the same input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))

import make_tiny_w2v_bert_2  # noqa: E402
from data_fixtures import write_flac  # noqa: E402
from lhotse import (  # noqa: E402
    CutSet,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
    load_manifest,
)
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel  # noqa: E402

from w2vbert.data.datasets import PretrainDataset, create_input_strategy  # noqa: E402
from w2vbert.data.fbank import snip_edges_num_frames, storage_tick_power  # noqa: E402
from w2vbert.data.shar import open_shar  # noqa: E402
from w2vbert.decoding.decode_sets import decode_batches  # noqa: E402
from w2vbert.export.decode_runs import fbank_batch  # noqa: E402
from w2vbert.model.factory import config_from_params, load_encoder_weights  # noqa: E402
from w2vbert.model.w2vbert import create_w2vbert_encoder  # noqa: E402
from w2vbert.prep.compute_features import compute_fbank_part  # noqa: E402
from w2vbert.prep.shar_export import write_shar  # noqa: E402
from w2vbert.training.init_checkpoint import load_init_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

FBANK = "w2v-bert-2.0"
NUM_SAMPLES = (16000, 11234, 7001)  # 98 / 69 / 42 frames: 49 / 34 / 21 steps, two odd frame counts
MAX_ABS_DIFF = 1e-3
STORED_ATOL = 2.0 ** (storage_tick_power(FBANK) - 1) + 1e-6  # stage 2's lilcom rounding


@pytest.fixture(scope="module")
def real_width_hf(tmp_path_factory) -> Path:
    """A random HF w2v-BERT 2.0 directory at the released width, with 2 blocks."""
    out = tmp_path_factory.mktemp("hf") / "w2v-bert-2.0-real-width"
    make_tiny_w2v_bert_2.main(
        ["--out-dir", str(out), "--layers", "2", "--dim", "1024", "--heads", "16", "--ffn-dim",
         "4096", "--kernel", "31", "--shaw-left", "64", "--shaw-right", "8"]
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def stage2(tmp_path_factory) -> tuple[CutSet, dict[str, np.ndarray], Path]:
    """Stage 2's cuts (``compute_fbank_part``, fbank ``w2v-bert-2.0``) of a test part of 3
    utterances of different lengths, each utterance's samples as read from its file, and the
    cuts file."""
    root = tmp_path_factory.mktemp("stage2")
    rng = np.random.default_rng(0)
    recordings, supervisions, waves = [], [], {}
    for i, n in enumerate(NUM_SAMPLES):
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(n)
        path = write_flac(root / "audio" / f"utt-{i}.flac", wave.astype(np.float32))
        rec = Recording.from_file(path, recording_id=f"utt-{i}")
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=f"utt-{i}", recording_id=rec.id, start=0.0,
                                               duration=rec.duration, text="HELLO"))  # fmt: skip
        waves[f"utt-{i}"] = sf.read(path, dtype="float32")[0]  # what the audio decodes to
    manifests = root / "manifests"
    manifests.mkdir()
    RecordingSet.from_recordings(recordings).to_file(manifests / "toy_recordings_test-x.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(
        manifests / "toy_supervisions_test-x.jsonl.gz"
    )
    cuts_path = compute_fbank_part(
        manifests, root / "fbank", "toy", "test-x", length_filter=None, fbank=FBANK
    )
    return load_manifest(cuts_path), waves, cuts_path


def _encoder(hf_dir: Path) -> torch.nn.Module:
    """The encoder ``--init-from DIR`` builds and loads."""
    ckpt = load_init_checkpoint(str(hf_dir))
    encoder = create_w2vbert_encoder(config_from_params(ckpt["params"])).eval()
    load_encoder_weights(encoder, ckpt["model"], str(hf_dir))
    return encoder


def _by_id(batch: dict, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, feature_lens) of ``batch`` reordered to ``ids`` (datasets sort by duration)."""
    order = [batch["cut_ids"].index(i) for i in ids]
    return batch["features"][order], batch["feature_lens"][order]


def test_stored_and_on_the_fly_features_give_transformers_outputs_at_the_real_width(
    real_width_hf, stage2
):
    cuts, waves, _ = stage2
    ids = [c.id for c in cuts]
    assert sorted(ids) == sorted(waves) and len(ids) == 3

    feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(real_width_hf)
    inputs = feature_extractor([waves[i] for i in ids], sampling_rate=16000, return_tensors="pt",
                               padding=True)  # fmt: skip
    with torch.no_grad():
        hf_model = Wav2Vec2BertModel.from_pretrained(real_width_hf).eval()
        reference = hf_model(**inputs).last_hidden_state  # (N, S, 1024)
    ref_steps = inputs["attention_mask"].sum(dim=1)  # (N,) valid 20 ms steps
    assert ref_steps.tolist() == [snip_edges_num_frames(len(waves[i])) // 2 for i in ids]

    encoder = _encoder(real_width_hf)
    stored = _by_id(PretrainDataset(create_input_strategy(False, FBANK))[cuts], ids)
    on_the_fly = _by_id(PretrainDataset(create_input_strategy(True, FBANK))[cuts], ids)
    for name, (x, x_lens) in (("stored", stored), ("on-the-fly", on_the_fly)):
        with torch.no_grad():
            out, steps = encoder(x, x_lens)
        assert steps.tolist() == ref_steps.tolist(), name
        for i, n in enumerate(steps.tolist()):
            diff = float((out[i, :n] - reference[i, :n]).abs().max())
            print(f"{name} {ids[i]} ({n} steps): max abs diff {diff:.2e}")
            assert diff <= MAX_ABS_DIFF, (name, ids[i], diff)
    assert float(reference.abs().mean()) > 0.1  # not a degenerate (all-zero) comparison


def test_stage_6_and_the_sherpa_onnx_check_give_the_encoder_the_same_input(stage2):
    cuts, waves, _ = stage2
    ids = [c.id for c in cuts]
    stored_x, stored_lens = _by_id(PretrainDataset(create_input_strategy(False, FBANK))[cuts], ids)
    decode = list(decode_batches(cuts, lambda text: [3], FBANK, max_duration=100.0))
    assert len(decode) == 1  # the 3 cuts in one batch
    decode_x, decode_lens = _by_id(decode[0], ids)
    assert torch.equal(decode_lens, stored_lens) and torch.equal(decode_x, stored_x)

    # stage 7 computes fbank from the samples, as sherpa-onnx does: the extractor's frames only
    check_x, check_lens = fbank_batch([waves[i] for i in ids], FBANK)
    assert torch.equal(check_lens, decode_lens)
    assert check_lens.tolist() == [snip_edges_num_frames(len(waves[i])) for i in ids]
    on_the_fly_x, _ = _by_id(PretrainDataset(create_input_strategy(True, FBANK))[cuts], ids)
    for i, n in enumerate(check_lens.tolist()):
        assert torch.equal(check_x[i, :n], on_the_fly_x[i, :n])  # the same kaldifeat frames
        assert float((check_x[i, :n] - decode_x[i, :n]).abs().max()) <= STORED_ATOL  # stored


def test_shar_keeps_the_stored_w2v_bert_2_features_exactly(stage2, tmp_path):
    cuts, _, cuts_path = stage2
    shar = open_shar(write_shar(cuts_path, tmp_path / "shar", shard_size=2), needs_features=True)
    from_shar = {c.id: c.load_features() for c in shar}
    assert sorted(from_shar) == sorted(c.id for c in cuts)
    for cut in cuts:  # Shar's lilcom would round them to 2 ** -5 again
        assert np.array_equal(from_shar[cut.id], cut.load_features()), cut.id
