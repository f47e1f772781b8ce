"""Streaming export for sherpa-onnx's OnlineRecognizer (model_type conformer): the ONNX encoder
chunk by chunk equals the PyTorch streaming encoder, and sherpa-onnx fed 0.1 s pieces of audio
gives PyTorch's streaming greedy transcripts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_streaming import _streaming_encoder  # noqa: E402

from w2vbert.export.decode_runs import Utterance, read_tokens  # noqa: E402
from w2vbert.export.onnx_export import read_metadata  # noqa: E402
from w2vbert.export.onnx_streaming import (  # noqa: E402
    OnnxStreamingEncoder,
    check_streamable,
    export_streaming_transducer,
)
from w2vbert.export.streaming_check import pytorch_stream_decode, sherpa_stream_decode  # noqa: E402
from w2vbert.model.config import tiny, w2v_bert_2_0_tiny  # noqa: E402
from w2vbert.model.streaming import encode_chunk, start_stream  # noqa: E402
from w2vbert.model.transducer import create_transducer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def deterministic_rng():
    torch.manual_seed(1234)


def _model(preset):
    encoder = _streaming_encoder(preset())
    model = create_transducer(encoder, encoder.output_dim, 12, decoder_dim=16, joiner_dim=16).eval()
    with torch.no_grad():  # emit often
        model.joiner.output_linear.bias.copy_(torch.linspace(-1.0, 1.5, 12))
        model.joiner.output_linear.weight.mul_(8.0)
    return model


def _tokens(path: Path) -> Path:
    symbols = ["<blk>", "<sos/eos>", "<unk>"] + [f"\u2581{c}" for c in "abcdefghi"]
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))
    return path


@pytest.mark.parametrize(
    "preset,fbank",
    [(tiny, "icefall"), (w2v_bert_2_0_tiny, "w2v-bert-2.0")],
    ids=["paper", "w2v-bert-2.0"],
)
def test_sherpa_online_recognizer_equals_pytorch_streaming_greedy(preset, fbank, tmp_path):
    import onnxruntime as ort

    model = _model(preset)
    tokens = _tokens(tmp_path / "tokens.txt")
    fp32, int8 = export_streaming_transducer(
        model, tmp_path, "test", tokens, chunk_size=2, left_chunks=4, int8=True
    )
    meta = read_metadata(fp32.encoder)
    assert meta["model_type"] == "conformer" and meta["pad_length"] == "0"
    assert meta["num_encoder_layers"] == "3"  # tiny: 2 blocks + 1 for the front end; w2v: 3 + 0
    frames = 2 * model.encoder.feature_encoder.frame_stride
    assert (meta["T"], meta["decode_chunk_len"], meta["left_context"]) == (
        str(frames),
        str(frames),
        "8",
    )
    assert read_metadata(fp32.decoder) == {"vocab_size": "12", "context_size": "2"}

    # the graph, chunk by chunk, from sherpa-onnx's zero states (two streams at once)
    wrapper = OnnxStreamingEncoder(model.encoder, model.joiner.encoder_proj, 2, 4)
    attn, conv = (s.numpy() for s in wrapper.initial_states(2))
    session = ort.InferenceSession(str(fp32.encoder))
    stream = start_stream(model.encoder, 2, 2, 4)
    x = torch.randn(2, 7 * frames, 80) * 3
    worst = 0.0
    for k in range(7):
        chunk = x[:, k * frames : (k + 1) * frames]
        processed = np.full(2, k * frames, dtype=np.int64)
        out, attn, conv = session.run(
            None,
            {
                "x": chunk.numpy(),
                "cached_attn": attn,
                "cached_conv": conv,
                "processed_frames": processed,
            },
        )
        ref, _, stream = encode_chunk(model.encoder, stream, chunk, torch.full((2,), frames))
        worst = max(
            worst, float(np.abs(out - model.joiner.encoder_proj(ref).detach().numpy()).max())
        )
    assert worst <= 1e-5

    rng = np.random.default_rng(0)
    utts = [
        Utterance(
            id=f"u{i}", samples=(0.1 * rng.standard_normal(int(16000 * d))).astype(np.float32)
        )
        for i, d in enumerate((1.3, 0.77, 2.05))
    ]
    sherpa = sherpa_stream_decode(fp32, utts, piece_seconds=0.1, fbank=fbank)
    pytorch = pytorch_stream_decode(
        model, utts, read_tokens(tokens), chunk_size=2, left_chunks=4, fbank=fbank
    )
    assert sum(len(h) for h in pytorch.hyps.values()) > 10
    assert sherpa.hyps == pytorch.hyps
    assert len(sherpa_stream_decode(int8, utts[:1], fbank=fbank).hyps) == 1  # the int8 files run


def test_exporting_an_offline_model_as_streaming_needs_the_explicit_flag(caplog):
    from dataclasses import asdict

    from w2vbert.model.config import with_streaming

    params = {"kind": "finetune", "model_config": asdict(tiny())}
    with pytest.raises(ValueError, match="cannot stream: `conv_causal` must be True"):
        check_streamable(params, allow_offline=True)
    params["model_config"] = asdict(with_streaming(tiny()))
    with pytest.raises(ValueError, match="trained without chunks .* --allow-offline-model"):
        check_streamable(params, allow_offline=False)
    check_streamable(params, allow_offline=True)
    assert "trained without chunks" in caplog.text
    check_streamable(
        {**params, "streaming": {"chunk_sizes": [2], "left_context_chunks": 4}}, allow_offline=False
    )
    with pytest.raises(ValueError, match="finite left context"):
        OnnxStreamingEncoder(_model(tiny).encoder, torch.nn.Linear(32, 16), 2, -1)


@pytest.mark.parametrize("fbank", ["icefall", "w2v-bert-2.0"])
def test_the_tail_padding_lets_every_frame_of_speech_reach_a_chunk(fbank, monkeypatch, tmp_path):
    """With 640 ms chunks (64 frames) a fixed 0.3 s tail left up to 34 frames of speech at the
    end of an utterance in a chunk that never runs, in the check and in sherpa-onnx alike."""
    import w2vbert.export.streaming_check as check
    from w2vbert.export.decode_runs import compute_fbank

    model = _model(tiny)
    calls = []
    real = check.encode_chunk
    monkeypatch.setattr(check, "encode_chunk", lambda *a: calls.append(1) or real(*a))
    frames = 64  # tiny: 16 steps of 4 frames
    rng = np.random.default_rng(0)
    for num_frames in (2 * frames + 34, 2 * frames + 1, 3 * frames):
        samples = (0.1 * rng.standard_normal(160 * num_frames + 240)).astype(np.float32)
        speech = compute_fbank(samples, fbank).size(0)
        calls.clear()
        pytorch_stream_decode(
            model, [Utterance(id="u", samples=samples)], read_tokens(_tokens(tmp_path / "t.txt")),
            chunk_size=16, left_chunks=1, fbank=fbank,
        )  # fmt: skip
        assert len(calls) * frames >= speech, (num_frames, speech, len(calls))


def test_streaming_export_checks_with_a_recordings_manifest_and_refuses_ignored_flags(tmp_path):
    """--check-manifest was silently skipped with --streaming (no check, --strict vacuous), and
    the streaming flags were silently ignored without --streaming."""
    from dataclasses import asdict, replace

    import soundfile as sf
    from lhotse import Recording, RecordingSet

    from w2vbert.export.stage import ExportOptions, run_export, run_streaming_export
    from w2vbert.model.config import with_streaming

    with pytest.raises(ValueError, match="--decode-chunk-size only apply with --streaming"):
        run_export(ExportOptions(exp_dir=tmp_path, decode_chunk_size="8"))
    wav = tmp_path / "a.wav"
    rng = np.random.default_rng(0)
    sf.write(wav, (0.1 * rng.standard_normal(20000)).astype(np.float32), 16000)
    manifest = tmp_path / "recordings.jsonl.gz"
    RecordingSet.from_recordings([Recording.from_file(wav)]).to_file(manifest)
    params = {
        "model_config": asdict(with_streaming(tiny())),
        "streaming": {"chunk_sizes": [2], "left_context_chunks": -1},
    }
    options = ExportOptions(
        exp_dir=tmp_path, tokens=_tokens(tmp_path / "tokens.txt"), check_manifest=manifest,
        streaming=True, strict=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="finite left context .* give --left-context-chunks N"):
        run_streaming_export(options, _model(tiny), params, "test")
    with pytest.raises(ValueError, match="--left-context-chunks must be a positive number"):
        run_streaming_export(replace(options, left_context_chunks=0), _model(tiny), params, "t")
    out = run_streaming_export(replace(options, left_context_chunks=4), _model(tiny), params, "t")
    assert out["check"]["num_utterances"] == 1 and out["check"]["passed"]
    assert (tmp_path / "export-check-t-chunk-2-left-4-streaming.md").is_file()
