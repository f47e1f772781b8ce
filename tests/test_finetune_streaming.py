"""Dynamic chunk fine-tuning (--chunk-sizes, --left-context-chunks) and chunked decoding
(--decode-chunk-size): settings, stored input statistics, exact resume, decoding warnings."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402

from w2vbert import decode, export_onnx, finetune, pretrain  # noqa: E402
from w2vbert.data.sampling import DataConfig  # noqa: E402
from w2vbert.training.finetuning import (  # noqa: E402
    FinetuneOptions,
    build_finetune_task,
    draw_chunk_size,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

COMMON = [*tiny_corpus.TRAIN_FLAGS, "--no-tensorboard"]
STREAMING = {"conv_causal": True, "input_norm": "global"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Corpus, BPE model and a 1-epoch tiny (offline) pre-training run."""
    root = tmp_path_factory.mktemp("fts")
    train, dev = tiny_corpus.make_cuts(root, "train", 6), tiny_corpus.make_cuts(
        root, "dev", 2, seed=1
    )
    bpe = tiny_corpus.make_bpe(root)
    pretrain.main(
        [
            "--train-cuts",
            str(train),
            "--model-preset",
            "tiny",
            "--exp-dir",
            str(root / "pre"),
            "--num-epochs",
            "1",
            "--save-every-n",
            "0",
            *COMMON,
        ]
    )
    return {"train": train, "dev": dev, "bpe": bpe, "pre": root / "pre" / "epoch-1.pt"}


def _options(setup, **kwargs) -> FinetuneOptions:
    return FinetuneOptions(
        init_from=str(setup["pre"]), bpe_model=setup["bpe"], decoder_dim=16, joiner_dim=16, **kwargs
    )


def test_chunk_sizes_with_an_offline_encoder_are_an_error_naming_the_options(setup):
    data = DataConfig(train_cuts=(setup["train"],))
    with pytest.raises(
        ValueError,
        match=r"--chunk-sizes 2,-1 trains a streaming encoder.*`conv_causal`.*`input_norm`",
    ):
        build_finetune_task(_options(setup, chunk_sizes="2,-1"), {}, data, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"`--chunk-sizes` must be a whole number of 40 ms"):
        build_finetune_task(
            _options(setup, chunk_sizes="100ms"), STREAMING, data, torch.device("cpu")
        )
    with pytest.raises(ValueError, match=r"left context .* positive number of chunks or -1"):
        build_finetune_task(
            _options(setup, chunk_sizes="2", left_context_chunks=0),
            STREAMING,
            data,
            torch.device("cpu"),
        )


def test_streaming_finetuning_of_an_offline_encoder_keeps_its_weights_and_estimates_input_stats(
    setup,
):
    data = DataConfig(train_cuts=(setup["train"],))
    options = _options(setup, chunk_sizes="80ms,-1", left_context_chunks=2)
    task = build_finetune_task(options, STREAMING, data, torch.device("cpu"))
    assert task.params["streaming"] == {"chunk_sizes": [2, -1], "left_context_chunks": 2}
    assert task.params["model_config"]["conv_causal"] is True
    pre = torch.load(setup["pre"], weights_only=False)["model"]
    enc = task.model.encoder.state_dict()
    assert all(torch.equal(enc[k], pre["encoder." + k]) for k in enc if "input_stats" not in k)
    frames = torch.cat(
        [torch.from_numpy(c.load_features()) for c in CutSet.from_file(setup["train"])]
    )
    stats = task.model.encoder.feature_encoder.input_stats
    torch.testing.assert_close(stats.mean, frames.mean(0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(
        stats.inv_std, (frames.var(0, unbiased=False) + 1e-5).rsqrt(), atol=1e-4, rtol=1e-4
    )
    assert (
        "streaming"
        not in build_finetune_task(_options(setup), {}, data, torch.device("cpu")).params
    )


def test_chunk_size_draws_depend_on_seed_and_step_only_and_cover_the_list():
    sizes = (2, 4, -1)
    draws = [draw_chunk_size(sizes, 42, step) for step in range(60)]
    assert set(draws) == set(sizes)
    assert draws == [draw_chunk_size(sizes, 42, step) for step in range(60)]
    assert draws != [draw_chunk_size(sizes, 43, step) for step in range(60)]


def _ft(setup, exp: Path, *extra: str) -> None:
    finetune.main(
        [
            "--init-from",
            str(setup["pre"]),
            "--bpe-model",
            str(setup["bpe"]),
            "--train-cuts",
            str(setup["train"]),
            "--valid-cuts",
            str(setup["dev"]),
            "--exp-dir",
            str(exp),
            "--decoder-dim",
            "16",
            "--joiner-dim",
            "16",
            "--chunk-sizes",
            "1,2,-1",
            "--left-context-chunks",
            "1",
            "--conv-causal",
            "--input-norm",
            "global",
            "--save-every-n",
            "2",
            *COMMON,
            *extra,
        ]
    )


def test_dynamic_chunk_finetuning_resumes_exactly_and_decoding_warns_for_untrained_chunks(
    setup, tmp_path, caplog
):
    _ft(setup, tmp_path / "straight", "--max-steps", "4")
    _ft(setup, tmp_path / "resumed", "--max-steps", "2")
    _ft(setup, tmp_path / "resumed", "--max-steps", "4")
    a = torch.load(tmp_path / "straight" / "checkpoint-4.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint-4.pt", weights_only=False)
    assert a["params"]["streaming"] == {"chunk_sizes": [1, 2, -1], "left_context_chunks": 1}
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    with pytest.raises(
        ValueError, match="finetune_options.chunk_sizes"
    ):  # resume refuses other chunks
        _ft(setup, tmp_path / "resumed", "--max-steps", "6", "--chunk-sizes", "4")

    exp = tmp_path / "straight"
    args = [
        "--exp-dir",
        str(exp),
        "--checkpoint",
        str(exp / "checkpoint-4.pt"),
        "--cuts",
        f"dev={setup['dev']}",
    ]
    with caplog.at_level(logging.WARNING):
        decode.main([*args, "--decode-chunk-size", "80ms", "--left-context-chunks", "1"])
    assert "never trained" not in caplog.text
    results = json.loads(
        next(
            (tmp_path / "straight" / "greedy_search").glob("results-dev-*chunk-2-left-1.json")
        ).read_text()
    )
    assert results["chunk_size"] == 2 and results["num_utterances"] == 2
    with caplog.at_level(logging.WARNING):
        decode.main([*args, "--decode-chunk-size", "3"])
    assert "--decode-chunk-size 3 (3 encoder steps): the model was never trained" in caplog.text
    with pytest.raises(SystemExit):
        decode.main([*args, "--decode-chunk-size", "60ms"])

    # stage 7 --streaming: sherpa-onnx's online recogniser on the dev audio = PyTorch streaming
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(setup["bpe"]))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size())))
    export_onnx.main(
        [
            "--exp-dir",
            str(exp),
            "--checkpoint",
            str(exp / "checkpoint-4.pt"),
            "--tokens",
            str(tokens),
            "--streaming",
            "--check-cuts",
            str(setup["dev"]),
            "--strict",
        ]
    )
    check = json.loads((exp / "export-check-checkpoint-4-chunk-1-left-1-streaming.json").read_text())
    assert check["passed"] and check["chunk_size"] == 1 and check["left_context_chunks"] == 1
    assert [r["identical_to_pytorch"] for r in check["runs"]] == [2, 2]


def test_w2v_bert_2_weights_fine_tune_as_a_streaming_model(setup, tmp_path):
    """From a (tiny random) Hugging Face w2v-BERT 2.0 directory: the stacked front end and the
    causal conv stream as they are, only the input statistics are new; chunks in ms are 20 ms
    steps."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
    import make_tiny_w2v_bert_2

    from w2vbert.data.datasets import AsrDataset, create_input_strategy
    from w2vbert.data.tokenizer import BpeTokenizer
    from w2vbert.model.streaming import stream_encode
    from w2vbert.training.finetuning import make_finetune_loss

    hf = tmp_path / "w2v-bert-2.0-tiny"
    make_tiny_w2v_bert_2.main(["--out-dir", str(hf), "--layers", "2", "--dim", "32"])
    options = FinetuneOptions(
        init_from=str(hf),
        bpe_model=setup["bpe"],
        decoder_dim=16,
        joiner_dim=16,
        chunk_sizes="80ms,-1",
        left_context_chunks=2,
    )
    data = DataConfig(train_cuts=(setup["train"],), on_the_fly_feats=True)
    task = build_finetune_task(options, {"input_norm": "global"}, data, torch.device("cpu"))
    assert task.params["streaming"] == {"chunk_sizes": [4, -1], "left_context_chunks": 2}
    encoder = task.model.encoder.eval()
    assert float(encoder.feature_encoder.input_stats.mean.abs().sum()) > 0  # estimated
    x, lens = torch.randn(2, 57, 80), torch.tensor([57, 30])
    with torch.no_grad():
        full, full_lens = encoder(x, lens, chunk_size=4, left_chunks=2)
    streamed, _ = stream_encode(encoder, x, lens, 4, 2)
    for i, n in enumerate(full_lens.tolist()):
        torch.testing.assert_close(streamed[i, :n], full[i, :n], atol=1e-5, rtol=0)
    task.model.train()
    tokenizer = BpeTokenizer(setup["bpe"])
    strategy = create_input_strategy(True, "w2v-bert-2.0")
    batch = AsrDataset(tokenizer, strategy)[CutSet.from_file(setup["train"]).subset(first=2)]
    loss, _, _ = make_finetune_loss(options, (4,), 2)(task.model, batch, 3)  # 4 steps a chunk
    loss.backward()
    assert torch.isfinite(loss)


def test_input_statistics_from_audio_only_shar_with_on_the_fly_features(tmp_path):
    """--input-norm global estimated its statistics with needs_features=True, so audio-only
    training cuts (a Shar directory of recordings) failed even with --on-the-fly-feats."""
    from w2vbert.model.config import tiny, with_streaming
    from w2vbert.model.w2vbert import create_w2vbert_encoder
    from w2vbert.prep.shar_export import write_shar
    from w2vbert.training.finetuning import estimate_input_statistics

    cuts = tiny_corpus.make_cuts(tmp_path, "train", 3)
    shar = write_shar(cuts, tmp_path / "shar", fields="audio", shard_size=2)
    stats = []
    for source in (shar, cuts):
        encoder = create_w2vbert_encoder(with_streaming(tiny()))
        data = DataConfig(train_cuts=(source,), on_the_fly_feats=True)
        estimate_input_statistics(encoder, data, "icefall", 10)
        stats.append(encoder.feature_encoder.input_stats.mean.clone())
    assert float(stats[1].abs().sum()) > 0
    torch.testing.assert_close(stats[0], stats[1], atol=1e-4, rtol=1e-5)
