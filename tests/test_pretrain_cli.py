"""python -m w2vbert.pretrain end to end on a tiny in-test corpus (tiny preset, a few steps)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402

from w2vbert import pretrain  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return tiny_corpus.make_cuts(root, "train", 6), tiny_corpus.make_cuts(root, "dev", 2, seed=1)


def _argv(corpus, exp_dir: Path, *extra: str) -> list[str]:
    train, dev = corpus
    return [
        "--train-cuts",
        str(train),
        "--valid-cuts",
        str(dev),
        "--model-preset",
        "tiny",
        "--exp-dir",
        str(exp_dir),
        "--max-duration",
        "4",
        "--num-buckets",
        "2",
        "--warmup-steps",
        "5",
        "--save-every-n",
        "2",
        "--log-interval",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def test_help_lists_icefall_and_objective_flags(capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in (
        "--world-size",
        "--num-epochs",
        "--start-epoch",
        "--start-batch",
        "--exp-dir",
        "--max-duration",
        "--base-lr",
        "--use-fp16",
        "--use-bf16",
        "--save-every-n",
        "--keep-last-k",
        "--average-period",
        "--no-tensorboard",
        "--model-preset",
        "--mlm-weight",
        "--contrastive-weight",
        "--diversity-weight",
        "--mlm-only",
        "--frame-stride",
        "--train-cuts",
        "--valid-cuts",
    ):
        assert flag in out


def test_pretrain_runs_writes_outputs_and_resumes_exactly(corpus, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.main(_argv(corpus, straight, "--num-epochs", "2"))
    # the same job stopped after 1 batch (mid-epoch), then re-run: resumes from checkpoint-1.pt
    pretrain.main(_argv(corpus, resumed, "--num-epochs", "2", "--max-steps", "1"))
    assert (resumed / "checkpoint-1.pt").is_file() and not (resumed / "epoch-1.pt").exists()
    pretrain.main(_argv(corpus, resumed, "--num-epochs", "2"))

    a = torch.load(straight / "epoch-2.pt", weights_only=False)
    b = torch.load(resumed / "epoch-2.pt", weights_only=False)
    assert a["batch_idx_train"] == b["batch_idx_train"] >= 3
    for key in ("model", "model_avg"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["params"]["kind"] == "pretrain" and a["params"]["model_config"]["model_dim"] == 32

    assert list((straight / "log").glob("log-train-*")) and list(
        (straight / "tensorboard").iterdir()
    )
    log_text = next((straight / "log").glob("log-train-*")).read_text()
    peak = re.search(r"Done: batch_idx_train \d+, 0 skipped steps, peak RSS ([0-9.]+) GiB", log_text)
    assert peak and 0.05 < float(peak.group(1)) < 8.0, log_text[-500:]
    info = json.loads((straight / "config.json").read_text())
    assert (
        info["git_sha"]
        and "torch" in info["versions"]
        and info["config"]["model"]["model_dim"] == 32
    )
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    train_row = next(r for r in rows if r["split"] == "train")
    for key in (
        "contrastive",
        "mlm",
        "diversity",
        "contrastive_acc",
        "mlm_acc",
        "code_perplexity",
        "code_usage",
        "temperature",
        "lr",
        "grad_norm",
    ):
        assert key in train_row
    assert any(r["split"] == "valid" for r in rows)


def test_mlm_only_ablation_drops_the_contrastive_loss(corpus, tmp_path):
    pretrain.main(
        _argv(
            corpus,
            tmp_path,
            "--num-epochs",
            "1",
            "--max-steps",
            "1",
            "--mlm-only",
            "--no-tensorboard",
        )
    )
    ckpt = torch.load(tmp_path / "checkpoint-1.pt", weights_only=False)
    cfg = ckpt["params"]["model_config"]
    assert cfg["contrastive_weight"] == 0.0 and cfg["num_contrastive_layers"] == 0
    assert not any(k.startswith("final_proj") for k in ckpt["model"])


def test_missing_train_cuts_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--model-preset", "tiny"])
    assert e.value.code == 2 and "--train-cuts is required" in capsys.readouterr().err


def test_code_usage_monitor_warns_once_per_window_when_usage_collapses(caplog):
    from w2vbert.training.pretraining import CodeUsageMonitor

    monitor = CodeUsageMonitor(threshold=0.1, window=5)
    for step in range(5):
        monitor.update(0.5, step)
    assert "collapse" not in caplog.text
    for step in range(5, 20):
        monitor.update(0.01, step)
    # the window is all low from step 9 on; then at most one warning per 5 batches: steps 9, 14, 19
    assert caplog.text.count("Codebook collapse?") == 3


def test_quantizer_param_group_has_its_own_lr_scale_and_frozen_steps():
    from w2vbert.model.config import get_w2vbert_config
    from w2vbert.model.w2vbert import create_w2vbert_model
    from w2vbert.training.config import TrainingConfig
    from w2vbert.training.optim import create_optimizer, create_scheduler
    from w2vbert.training.pretraining import PretrainOptions, pretrain_param_groups

    model = create_w2vbert_model(get_w2vbert_config("tiny"))
    options = PretrainOptions(quantizer_lr_scale=0.1, quantizer_frozen_steps=2)
    groups = pretrain_param_groups(model, options)
    assert [g["name"] for g in groups] == ["model", "quantizer"]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.quantizer.parameters()}
    count = sum(len(g["params"]) for g in groups)
    assert count == len(list(model.parameters()))
    train = TrainingConfig(base_lr=1e-3, warmup_steps=0)
    optimizer = create_optimizer(groups, train)
    scheduler = create_scheduler(optimizer, train)
    lrs = []
    for _ in range(4):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == [1e-3, 0.0] and lrs[1] == [1e-3, 0.0]
    assert lrs[2] == pytest.approx([1e-3, 1e-4]) and lrs[3] == pytest.approx([1e-3, 1e-4])
