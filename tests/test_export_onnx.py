"""Stage 7: ONNX export in the sherpa-onnx layout, checked by onnxruntime and by sherpa-onnx itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from w2vbert.decoding.scoring import write_recogs
from w2vbert.decoding.search import greedy_search_batch
from w2vbert.export.check import CheckConfig, read_recogs, run_check, write_check_report
from w2vbert.export.decode_runs import (
    Utterance,
    compute_fbank,
    create_recognizer,
    load_utterances,
    read_tokens,
    token_ids_to_words,
)
from w2vbert.export.onnx_export import ExportedFiles, export_transducer, read_metadata
from w2vbert.model.config import get_w2vbert_config
from w2vbert.model.transducer import Transducer, create_transducer
from w2vbert.model.w2vbert import create_w2vbert_encoder

SYMBOLS = ["<blk>", "<sos/eos>", "<unk>", "▁A", "▁B", "C", "D", "▁E", "F", "▁G", "H", "I"]
VOCAB_SIZE = len(SYMBOLS)
JOINER_DIM = 16
ENCODER_ATOL = 1e-4  # fp32 onnxruntime vs PyTorch, encoder_out (values ~1)


PRESETS = ("tiny", "w2v-bert-2.0-tiny")
"""The recipe's architecture and w2v-BERT 2.0's (stacked fbank, Shaw positions, causal conv,
its own fbank): every export check runs on both."""


def _tiny_transducer(preset: str = "tiny") -> Transducer:
    torch.manual_seed(7)
    encoder = create_w2vbert_encoder(get_w2vbert_config(preset))
    model = create_transducer(
        encoder, encoder.output_dim, VOCAB_SIZE, decoder_dim=16, joiner_dim=JOINER_DIM
    )
    with torch.no_grad():
        # A random joiner emits some tokens; <unk> never (sherpa-onnx treats <unk> as blank).
        model.joiner.output_linear.bias[2] = -100.0
    return model.eval()


def _write_audio(directory: Path) -> list[Path]:
    """Four 16 kHz FLAC files of 1-3 s: sines with noise, of different pitches and lengths."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (seconds, freq) in enumerate([(1.0, 220.0), (2.3, 440.0), (3.0, 330.0), (1.7, 880.0)]):
        t = np.arange(int(seconds * 16000)) / 16000
        samples = 0.3 * np.sin(2 * np.pi * freq * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(
            t.size
        )
        path = directory / f"utt{i}.flac"
        sf.write(path, samples.astype(np.float32), 16000)
        paths.append(path)
    return paths


@pytest.fixture(scope="module", params=PRESETS)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Transducer, ExportedFiles, ExportedFiles, Path]:
    directory = tmp_path_factory.mktemp("export")
    tokens = directory / "tokens-in.txt"
    tokens.write_text("".join(f"{s} {i}\n" for i, s in enumerate(SYMBOLS)), encoding="utf-8")
    model = _tiny_transducer(request.param)
    fp32, int8 = export_transducer(model, directory / "exp", "epoch-1-avg-1", tokens, int8=True)
    assert int8 is not None
    return model, fp32, int8, directory


@pytest.fixture(scope="module")
def cuts_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cuts of the FLAC files, with recordings and the (made-up) text "A B"."""
    from lhotse import CutSet, Recording, SupervisionSegment

    directory = tmp_path_factory.mktemp("audio")
    cuts = []
    for path in _write_audio(directory):
        recording = Recording.from_file(path)
        cut = recording.to_cut()
        cut.supervisions = [
            SupervisionSegment(
                id=recording.id,
                recording_id=recording.id,
                start=0,
                duration=recording.duration,
                text="A B",
            )
        ]
        cuts.append(cut)
    manifest = directory / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(manifest)
    return manifest


@pytest.fixture(scope="module")
def utterances(cuts_manifest: Path) -> list[Utterance]:
    return load_utterances(cuts_manifest)


def _fbank_kind(model: Transducer) -> str:
    from w2vbert.model.feature_encoder import StackedFbankFrontend

    return "w2v-bert-2.0" if isinstance(model.encoder.feature_encoder, StackedFbankFrontend) else "icefall"


def _pytorch_greedy_ids(model: Transducer, samples: np.ndarray) -> list[int]:
    x = compute_fbank(samples, _fbank_kind(model)).unsqueeze(0)  # (1, T, 80)
    with torch.no_grad():
        encoder_out, encoder_out_lens = model.encoder(x, torch.tensor([x.size(1)]))
        return greedy_search_batch(model, encoder_out, encoder_out_lens)[0]


def test_export_writes_sherpa_layout_with_metadata(exported: tuple) -> None:
    model, fp32, int8, _ = exported
    assert fp32.encoder.name == "encoder-epoch-1-avg-1.onnx"
    assert int8.joiner.name == "joiner-epoch-1-avg-1.int8.onnx"
    assert read_tokens(fp32.tokens) == dict(enumerate(SYMBOLS))
    for files in (fp32, int8):
        decoder_meta = read_metadata(files.decoder)
        assert (decoder_meta["vocab_size"], decoder_meta["context_size"]) == (str(VOCAB_SIZE), "2")
        assert read_metadata(files.joiner)["joiner_dim"] == str(JOINER_DIM)
        encoder_meta = read_metadata(files.encoder)
        assert encoder_meta["model_type"] == "w2v-bert-rnnt"
        assert encoder_meta["version"] == "1" and encoder_meta["comment"]
    io = ort.InferenceSession(str(fp32.encoder))
    assert [i.name for i in io.get_inputs()] == ["x", "x_lens"]
    assert [o.name for o in io.get_outputs()] == ["encoder_out", "encoder_out_lens"]
    io = ort.InferenceSession(str(fp32.joiner))
    assert [i.name for i in io.get_inputs()] == ["encoder_out", "decoder_out"]
    assert [o.name for o in io.get_outputs()] == ["logit"]


def test_encoder_onnx_matches_pytorch_for_two_batch_sizes_and_lengths(exported: tuple) -> None:
    model, fp32, _, _ = exported
    session = ort.InferenceSession(str(fp32.encoder))
    gen = torch.Generator().manual_seed(3)
    for lens in ([57], [123, 90, 31]):
        x = torch.randn(len(lens), max(lens), 80, generator=gen)
        x_lens = torch.tensor(lens, dtype=torch.int64)
        out, out_lens = session.run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
        with torch.no_grad():
            ref, ref_lens = model.encoder(x, x_lens)
            ref = model.joiner.encoder_proj(ref)  # (N, S, J)
        np.testing.assert_array_equal(out_lens, ref_lens.numpy())
        assert out.shape == tuple(ref.shape)
        for i, s in enumerate(ref_lens.tolist()):  # values beyond the length are unspecified
            np.testing.assert_allclose(out[i, :s], ref[i, :s].numpy(), atol=ENCODER_ATOL, rtol=0)


def test_decoder_onnx_minus_one_context_matches_pytorch_initial_step(exported: tuple) -> None:
    model, fp32, _, _ = exported
    session = ort.InferenceSession(str(fp32.decoder))
    y = np.array([[-1, 0], [-1, 5], [3, 4]], dtype=np.int64)
    (out,) = session.run(None, {"y": y})
    with torch.no_grad():
        # The searches' own first step: context [-1, blank] from initial_state().
        first, _ = model.decoder.step(model.decoder.initial_state(1), torch.tensor([0]))
        ref = model.joiner.decoder_proj(model.decoder(torch.from_numpy(y), need_pad=False)[:, 0])
        ref_first = model.joiner.decoder_proj(first)
    assert out.shape == (3, JOINER_DIM)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out[:1], ref_first.numpy(), atol=1e-5, rtol=0)


def test_joiner_onnx_matches_pytorch_on_projected_inputs(exported: tuple) -> None:
    model, fp32, _, _ = exported
    gen = torch.Generator().manual_seed(5)
    enc, dec = torch.randn(4, JOINER_DIM, generator=gen), torch.randn(4, JOINER_DIM, generator=gen)
    (logit,) = ort.InferenceSession(str(fp32.joiner)).run(
        None, {"encoder_out": enc.numpy(), "decoder_out": dec.numpy()}
    )
    with torch.no_grad():
        ref = model.joiner(enc, dec, project_input=False)
    np.testing.assert_allclose(logit, ref.numpy(), atol=1e-5, rtol=0)


def test_sherpa_onnx_greedy_gives_exactly_the_pytorch_tokens(
    exported: tuple, utterances: list[Utterance]
) -> None:
    model, fp32, _, _ = exported
    recognizer = create_recognizer(fp32, "greedy_search", fbank=_fbank_kind(model))
    id_to_symbol = read_tokens(fp32.tokens)
    num_tokens = 0
    for utt in utterances:
        stream = recognizer.create_stream()
        stream.accept_waveform(16000, utt.samples)
        recognizer.decode_stream(stream)
        ids = _pytorch_greedy_ids(model, utt.samples)
        num_tokens += len(ids)
        # sherpa-onnx shows "▁" as a space in its token strings.
        assert list(stream.result.tokens) == [
            id_to_symbol[i].replace("▁", " ") for i in ids
        ], utt.id
        assert stream.result.text.split() == token_ids_to_words(ids, id_to_symbol)
    assert num_tokens >= 10, "the random model must emit tokens for the comparison to mean anything"


def test_lstm_decoder_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    encoder = create_w2vbert_encoder(get_w2vbert_config("tiny"))
    model = create_transducer(
        encoder, encoder.output_dim, VOCAB_SIZE, decoder_dim=16, decoder_type="lstm"
    )
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{s} {i}\n" for i, s in enumerate(SYMBOLS)), encoding="utf-8")
    with pytest.raises(TypeError, match="stateless decoder"):
        export_transducer(model, tmp_path / "exp", "x", tokens)


def test_export_refuses_tokens_file_of_the_wrong_size(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blk> 0\n<unk> 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must list vocab_size=12 tokens, but lists 2"):
        export_transducer(_tiny_transducer(), tmp_path / "exp", "x", tokens)


def test_check_compares_sherpa_fp32_int8_and_stage6_recogs(
    exported: tuple, utterances: list[Utterance]
) -> None:
    model, fp32, int8, directory = exported
    id_to_symbol = read_tokens(fp32.tokens)
    # A stage-6 recogs file: PyTorch greedy, one hypothesis spoiled on purpose.
    results = []
    for i, utt in enumerate(utterances):
        hyp = token_ids_to_words(_pytorch_greedy_ids(model, utt.samples), id_to_symbol)
        results.append((utt.id, list(utt.ref), hyp + ["EXTRA"] if i == 0 else hyp))
    recogs = directory / "recogs-test-greedy_search-epoch-1-avg-1.txt"
    write_recogs(recogs, results)
    assert read_recogs(recogs)[utterances[1].id] == (list(utterances[1].ref), results[1][2])

    result = run_check(
        model,
        fp32,
        int8,
        utterances,
        config=CheckConfig(batch_size=3, fbank=_fbank_kind(model)),
        recogs={"greedy_search": recogs},
    )
    assert result["checks"]["fp32_greedy_identical_to_pytorch"] is True
    n = len(utterances)
    assert result["checks"]["fp32_greedy_identical_to_stage6"] == f"{n - 1}/{n}"
    # the spoiled hypothesis has one inserted word: its WER difference decides the check
    refs = {u.id: list(u.ref) for u in utterances}
    delta = -100.0 / sum(len(r) for r in refs.values())
    assert result["checks"]["fp32_greedy_wer_minus_stage6"] == pytest.approx(delta)
    assert result["checks"]["fp32_greedy_wer_within_1.0_of_stage6"] is (abs(delta) <= 1.0)
    assert [d["id"] for d in result["fp32_greedy_differences_vs_stage6"]] == [utterances[0].id]
    rows = {row["run"]: row for row in result["runs"]}
    assert rows["sherpa-onnx-fp32/greedy_search"]["identical_to_pytorch"] == len(utterances)
    assert rows["sherpa-onnx-int8/greedy_search"]["rtf"] > 0
    assert set(rows) >= {
        "pytorch/modified_beam_search",
        "sherpa-onnx-fp32/modified_beam_search",
        "stage6/greedy_search",
    }
    write_check_report(result, directory / "c.json", directory / "c.md", "check")
    assert json.loads((directory / "c.json").read_text())["num_utterances"] == len(utterances)
    assert "fp32_greedy_differences_vs_stage6 (1)" in (directory / "c.md").read_text()


def test_cli_exports_epoch_checkpoint_and_writes_the_check(
    cuts_manifest: Path, utterances: list[Utterance], tmp_path: Path
) -> None:
    import dataclasses

    from lhotse import CutSet

    from w2vbert.export_onnx import main

    model = _tiny_transducer()
    lang = tmp_path / "lang_bpe_12"
    lang.mkdir()
    (lang / "tokens.txt").write_text(
        "".join(f"{s} {i}\n" for i, s in enumerate(SYMBOLS)), encoding="utf-8"
    )
    params = {
        "kind": "finetune",
        "model_config": dataclasses.asdict(get_w2vbert_config("tiny")),
        "vocab_size": VOCAB_SIZE,
        "blank_id": 0,
        "context_size": 2,
        "decoder_dim": 16,
        "joiner_dim": JOINER_DIM,
        "decoder_type": "stateless",
        "joiner_activation": "tanh",
        "ctc": False,
        "bpe_model": str(lang / "bpe.model"),
    }
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({"model": model.state_dict(), "params": params}, exp / "epoch-1.pt")
    # Stage 6's greedy recogs for this model, from PyTorch.
    id_to_symbol = read_tokens(lang / "tokens.txt")
    decode_dir = exp / "greedy_search"
    decode_dir.mkdir()
    write_recogs(
        decode_dir / "recogs-test-mini-epoch-1-avg-1.txt",
        [
            (
                u.id,
                list(u.ref),
                token_ids_to_words(_pytorch_greedy_ids(model, u.samples), id_to_symbol),
            )
            for u in utterances[:2]
        ],
    )
    cuts = tmp_path / "cuts.jsonl.gz"
    CutSet.from_file(cuts_manifest).subset(first=2).to_file(cuts)
    import logging

    handlers = list(logging.getLogger().handlers)
    try:
        main(
            [
                "--exp-dir",
                str(exp),
                "--epoch",
                "1",
                "--avg",
                "1",
                "--no-use-averaged-model",
                "--int8",
                "--check-cuts",
                str(cuts),
                "--decode-dir",
                str(decode_dir),
                "--strict",
            ]
        )
    finally:  # the CLI configured logging: give the root logger back
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
    assert any((exp / "log").glob("log-export-*"))
    names = {p.name for p in exp.iterdir()}
    assert {
        "encoder-epoch-1-avg-1.onnx",
        "decoder-epoch-1-avg-1.int8.onnx",
        "tokens.txt",
        "export-check-epoch-1-avg-1.md",
        "export-check-epoch-1-avg-1.json",
    } <= names
    result = json.loads((exp / "export-check-epoch-1-avg-1.json").read_text())
    assert result["checks"]["fp32_greedy_identical_to_stage6"] == "2/2"
    assert result["num_utterances"] == 2 and result["passed"] is True
