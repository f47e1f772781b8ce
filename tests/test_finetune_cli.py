"""python -m w2vbert.finetune / decode / average end to end on a tiny in-test corpus."""

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

from w2vbert import average, decode, finetune, pretrain  # noqa: E402
from w2vbert.data.sampling import DataConfig  # noqa: E402
from w2vbert.training.finetuning import FinetuneOptions, build_finetune_task  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

COMMON = [*tiny_corpus.TRAIN_FLAGS, "--no-tensorboard"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Corpus, BPE model and a 1-epoch tiny pre-training run."""
    root = tmp_path_factory.mktemp("ft")
    train, dev = (
        tiny_corpus.make_cuts(root, "train", 6),
        tiny_corpus.make_cuts(root, "dev", 2, seed=1),
    )
    bpe = tiny_corpus.make_bpe(root)
    pre = root / "pretrain"
    pretrain.main(
        [
            "--train-cuts",
            str(train),
            "--model-preset",
            "tiny",
            "--exp-dir",
            str(pre),
            "--num-epochs",
            "1",
            "--save-every-n",
            "0",
            *COMMON,
        ]
    )
    return {"root": root, "train": train, "dev": dev, "bpe": bpe, "pre": pre / "epoch-1.pt"}


def _ft_argv(s, exp_dir: Path, *extra: str) -> list[str]:
    return [
        "--init-from",
        str(s["pre"]),
        "--bpe-model",
        str(s["bpe"]),
        "--train-cuts",
        str(s["train"]),
        "--valid-cuts",
        str(s["dev"]),
        "--exp-dir",
        str(exp_dir),
        "--decoder-dim",
        "16",
        "--joiner-dim",
        "16",
        *COMMON,
        *extra,
    ]


def test_finetune_then_decode_and_average_write_icefall_outputs(setup, tmp_path, capsys):
    exp = tmp_path / "ft"
    finetune.main(
        _ft_argv(setup, exp, "--num-epochs", "2", "--save-every-n", "2", "--ctc-loss-scale", "0.1")
    )
    ckpt = torch.load(exp / "epoch-2.pt", weights_only=False)
    p = ckpt["params"]
    assert (
        p["kind"] == "finetune"
        and p["vocab_size"] == 20
        and p["context_size"] == 2
        and p["blank_id"] == 0
    )
    assert p["decoder_dim"] == 16 and p["joiner_dim"] == 16 and p["model_config"]["model_dim"] == 32
    assert p["bpe_model"] == str(setup["bpe"]) and p["ctc"] is True

    decode.main(
        [
            "--exp-dir",
            str(exp),
            "--epoch",
            "2",
            "--avg",
            "1",
            "--use-averaged-model",
            "--cuts",
            f"dev={setup['dev']}",
            "--max-duration",
            "10",
            "--device",
            "cpu",
        ]
    )
    decode.main(
        [
            "--exp-dir",
            str(exp),
            "--epoch",
            "2",
            "--avg",
            "2",
            "--no-use-averaged-model",
            "--decoding-method",
            "modified_beam_search",
            "--beam-size",
            "2",
            "--cuts",
            f"dev={setup['dev']}",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "WER" in out and "RTF" in out
    suffix = "epoch-2-avg-1-use-averaged-model"
    for kind in ("recogs", "errs", "wer-summary"):
        assert (exp / "greedy_search" / f"{kind}-dev-{suffix}.txt").is_file()
        assert (
            exp / "modified_beam_search" / f"{kind}-dev-epoch-2-avg-2-beam-size-2.txt"
        ).is_file()
    info = json.loads((exp / "greedy_search" / f"results-dev-{suffix}.json").read_text())
    assert info["num_utterances"] == 2 and info["rtf"] > 0 and info["wer"] >= 0
    assert info["cer"] >= 0

    avg_file = tmp_path / "avg.pt"
    average.main(["--exp-dir", str(exp), "--epoch", "2", "--avg", "1", "--output", str(avg_file)])
    decode.main(
        [
            "--exp-dir",
            str(exp),
            "--checkpoint",
            str(avg_file),
            "--cuts",
            f"dev={setup['dev']}",
            "--device",
            "cpu",
        ]
    )
    assert (exp / "greedy_search" / "wer-summary-dev-avg.txt").is_file()


def test_fast_beam_search_without_k2_is_a_clear_error(setup, tmp_path):
    from w2vbert.objectives.rnnt_backend import backend_name

    if backend_name() == "k2":
        pytest.skip("k2 is importable here")
    with pytest.raises(SystemExit):
        decode.main(
            [
                "--exp-dir",
                str(tmp_path),
                "--epoch",
                "1",
                "--decoding-method",
                "fast_beam_search",
                "--cuts",
                f"dev={setup['dev']}",
            ]
        )
    log = next((tmp_path / "fast_beam_search" / "log").glob("log-decode-*")).read_text()
    assert "fast_beam_search needs k2" in log


def test_init_from_loads_the_pretrained_encoder_and_drops_the_heads(setup):
    options = FinetuneOptions(
        init_from=str(setup["pre"]), bpe_model=setup["bpe"], decoder_dim=16, joiner_dim=16
    )
    task = build_finetune_task(options, {}, DataConfig(), torch.device("cpu"))
    pre = torch.load(setup["pre"], weights_only=False)["model"]
    enc = task.model.encoder.state_dict()
    assert enc and all(torch.equal(enc[k], pre["encoder." + k]) for k in enc)
    assert not any(
        k.startswith(("quantizer", "final_proj", "mlm_head")) for k in task.model.state_dict()
    )


def test_init_from_with_another_encoder_config_lists_the_mismatched_keys(setup):
    options = FinetuneOptions(
        init_from=str(setup["pre"]), bpe_model=setup["bpe"], model_preset="mini"
    )
    with pytest.raises(
        ValueError, match=r"mismatched keys: .*model_dim \(checkpoint 32, requested 192\)"
    ):
        build_finetune_task(options, {}, DataConfig(), torch.device("cpu"))


def test_frozen_encoder_does_not_move_while_new_layers_train(setup, tmp_path):
    exp = tmp_path / "frozen"
    finetune.main(
        _ft_argv(
            setup,
            exp,
            "--num-epochs",
            "1",
            "--max-steps",
            "2",
            "--save-every-n",
            "2",
            "--freeze-encoder-steps",
            "2",
            "--no-spec-augment",
        )
    )
    after = torch.load(exp / "checkpoint-2.pt", weights_only=False)["model"]
    pre = torch.load(setup["pre"], weights_only=False)["model"]
    enc_keys = [k for k in after if k.startswith("encoder.")]
    assert all(torch.equal(after[k], pre[k]) for k in enc_keys)
    options = FinetuneOptions(
        init_from=str(setup["pre"]), bpe_model=setup["bpe"], decoder_dim=16, joiner_dim=16
    )
    fresh = build_finetune_task(options, {}, DataConfig(), torch.device("cpu")).model.state_dict()
    assert not torch.equal(
        after["joiner.output_linear.weight"], fresh["joiner.output_linear.weight"]
    )


def test_from_scratch_needs_a_preset(setup, tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune.main(
            [
                "--init-from",
                "none",
                "--bpe-model",
                str(setup["bpe"]),
                "--train-cuts",
                str(setup["train"]),
                "--exp-dir",
                str(tmp_path),
            ]
        )
    assert "needs --model-preset" in capsys.readouterr().err


def test_missing_init_checkpoint_is_a_usage_error_naming_it(setup, tmp_path, capsys):
    missing = tmp_path / "exp" / "pretrain" / "epoch-9.pt"
    with pytest.raises(SystemExit) as e:
        finetune.main(
            [
                "--init-from",
                str(missing),
                "--bpe-model",
                str(setup["bpe"]),
                "--train-cuts",
                str(setup["train"]),
                "--exp-dir",
                str(tmp_path),
            ]
        )
    assert e.value.code == 2 and f"--init-from {missing} does not exist" in capsys.readouterr().err


def test_lstm_prediction_network_trains_through_the_same_loss(setup):
    from w2vbert.data.datasets import AsrDataset
    from w2vbert.data.tokenizer import BpeTokenizer
    from w2vbert.training.finetuning import make_finetune_loss

    options = FinetuneOptions(
        init_from=str(setup["pre"]),
        bpe_model=setup["bpe"],
        decoder_type="lstm",
        decoder_dim=16,
        joiner_dim=16,
    )
    task = build_finetune_task(options, {}, DataConfig(), torch.device("cpu"))
    batch = AsrDataset(BpeTokenizer(setup["bpe"]))[CutSet.from_file(setup["train"]).subset(first=2)]
    loss, metrics, frames = make_finetune_loss(options)(task.model, batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and frames > 0 and {"simple_loss", "pruned_loss"} <= set(metrics)
    assert task.model.decoder.__class__.__name__ == "LstmDecoder"


def test_decoding_with_a_bpe_model_of_another_size_is_refused_and_keeps_the_results(
    setup, tmp_path
):
    exp = tmp_path / "ft"
    finetune.main(_ft_argv(setup, exp, "--num-epochs", "1", "--save-every-n", "0"))
    argv = ["--exp-dir", str(exp), "--epoch", "1", "--no-use-averaged-model",
            "--cuts", f"dev={setup['dev']}"]  # fmt: skip
    decode.main(argv)
    results = sorted((exp / "greedy_search").glob("*-dev-*"))
    before = {p: p.read_bytes() for p in results}
    other = tiny_corpus.make_bpe(tmp_path, vocab_size=16)
    with pytest.raises(SystemExit):
        decode.main(argv + ["--bpe-model", str(other)])
    log = sorted((exp / "greedy_search" / "log").glob("log-decode-*"))[-1].read_text()
    assert f"BPE model {other} has 16 pieces, but the model was trained with 20" in log
    assert {p: p.read_bytes() for p in results} == before


def test_a_nan_test_cut_at_decoding_is_a_warning_naming_it(setup, tmp_path, monkeypatch, caplog):
    from w2vbert.decoding import decode_sets as ds

    exp = tmp_path / "ft"
    finetune.main(_ft_argv(setup, exp, "--num-epochs", "1", "--save-every-n", "0"))
    real = ds.load_transducer

    def with_nan_encoder(state, params):
        model = real(state, params)
        encoder_forward = model.encoder.forward

        def forward(x, x_lens):
            out, lens = encoder_forward(x, x_lens)
            return torch.cat([out[:1] * float("nan"), out[1:]]), lens

        model.encoder.forward = forward
        return model

    monkeypatch.setattr(ds, "load_transducer", with_nan_encoder)
    with caplog.at_level(logging.WARNING):
        decode.main(["--exp-dir", str(exp), "--epoch", "1", "--no-use-averaged-model",
                     "--cuts", f"dev={setup['dev']}"])  # fmt: skip
    assert "dev: 1 utterance(s) gave a non-finite encoder output" in caplog.text


def test_a_bad_spec_augment_setting_is_a_usage_error_naming_its_option(setup, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        finetune.main(["--init-from", "none", "--model-preset", "tiny", "--bpe-model",
                       str(setup["bpe"]), "--train-cuts", str(setup["train"]), "--exp-dir",
                       str(tmp_path), "--spec-augment-max-frames-mask-fraction", "1.5"])  # fmt: skip
    assert e.value.code == 2
    assert "--spec-augment-max-frames-mask-fraction: SpecAugment max_frames_mask_fraction must " \
        "be in (0, 1), but is 1.5" in capsys.readouterr().err
