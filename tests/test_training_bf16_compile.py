"""The training command's GPU flags on the CPU: ``--use-bf16`` (with ``--bf16-on-cpu``) and
``--compile`` give the fp32 eager losses within bf16's tolerance, and resume bit-identically.

``--compile`` is ``torch.compile`` of each conformer block (w2vbert/training/runner.py). Its default
backend, inductor, generates C++ on the CPU: the first compile of the tiny model took 284 s on the
2 shared cores of this suite's machine (losses equal to eager to 1e-6), too slow for the suite. So
the blocks here compile with the ``aot_eager`` backend: Dynamo's capture with dynamic shapes and
AOTAutograd's forward/backward graphs, i.e. everything of ``--compile`` but inductor's code
generation, which bench/gpu/validate.sh runs on a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402

from w2vbert import pretrain  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# bf16 keeps 8 significant bits: each rounding is within 2^-9 = 0.2 % relative. Through the
# network and the cosine/0.1 logits of InfoNCE the tiny model's per-step losses (~6) moved by at
# most 0.8 % here; 3 % leaves room for other CPUs' kernels while still failing a loss computed
# in another dtype's range or a step that trained differently (a lost update moves them ~10 %).
BF16_RTOL = 0.03
BF16 = ("--use-bf16", "--bf16-on-cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return tiny_corpus.make_cuts(root, "train", 6), tiny_corpus.make_cuts(root, "dev", 2, seed=1)


@pytest.fixture()
def compiled_blocks(monkeypatch):
    """``nn.Module.compile`` with the aot_eager backend (see the module docstring); yields the
    modules compiled, so that a test can check that ``--compile`` reached them."""
    compiled: list[nn.Module] = []
    original = nn.Module.compile

    def compile_aot_eager(self, *args, **kwargs):
        compiled.append(self)
        return original(self, *args, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(nn.Module, "compile", compile_aot_eager)
    yield compiled
    torch._dynamo.reset()


def _train(corpus, exp_dir: Path, *extra: str) -> list[dict]:
    train, dev = corpus
    pretrain.main([
        "--train-cuts", str(train), "--valid-cuts", str(dev), "--model-preset", "tiny",
        "--exp-dir", str(exp_dir), "--max-duration", "4", "--num-buckets", "2", "--num-epochs", "2",
        "--warmup-steps", "5", "--save-every-n", "2", "--log-interval", "1", "--device", "cpu",
        "--no-tensorboard", *extra,
    ])  # fmt: skip
    rows = [json.loads(x) for x in (exp_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


def _losses(rows: list[dict]) -> torch.Tensor:
    return torch.tensor([[r[k] for k in ("loss", "contrastive", "mlm")] for r in rows], dtype=torch.float64)


def test_bf16_and_compile_give_the_fp32_eager_losses_within_bf16_tolerance_and_resume_exactly(
    corpus, compiled_blocks, tmp_path
):
    fp32 = _losses(_train(corpus, tmp_path / "fp32"))
    bf16 = _losses(_train(corpus, tmp_path / "bf16", *BF16))
    assert not compiled_blocks
    assert bf16.shape == fp32.shape and len(fp32) >= 6
    assert not torch.equal(bf16, fp32)  # autocast did run in bf16
    torch.testing.assert_close(bf16, fp32, rtol=BF16_RTOL, atol=0.0)

    both = _losses(_train(corpus, tmp_path / "both", *BF16, "--compile"))
    cfg = torch.load(tmp_path / "both" / "epoch-2.pt", weights_only=False)["params"]["model_config"]
    assert len(compiled_blocks) == cfg["num_contrastive_layers"] + cfg["num_mlm_layers"]
    assert {type(m).__name__ for m in compiled_blocks} == {"ConformerBlock"}
    # compiling changes no number of the bf16 step here (aot_eager runs the same kernels)
    torch.testing.assert_close(both, bf16, rtol=1e-5, atol=0.0)

    # the same compiled bf16 job stopped after its first update, then run again: it resumes
    # from checkpoint-1.pt and ends with the uninterrupted run's weights, bit for bit
    resumed = tmp_path / "resumed"
    _train(corpus, resumed, *BF16, "--compile", "--max-steps", "1")
    assert (resumed / "checkpoint-1.pt").is_file() and not (resumed / "epoch-1.pt").exists()
    _train(corpus, resumed, *BF16, "--compile")
    a = torch.load(tmp_path / "both" / "epoch-2.pt", weights_only=False)
    b = torch.load(resumed / "epoch-2.pt", weights_only=False)
    assert a["batch_idx_train"] == b["batch_idx_train"] == len(fp32)
    for key in ("model", "model_avg"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["optimizer"]["param_groups"][0]["fused"]  # fused AdamW/Adam, as on a GPU
