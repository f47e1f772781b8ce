"""BEST-RQ (Chiu et al. 2022): frozen random-projection targets, input-noise masking, MLM loss at
masked steps only, and the run through the same pre-training, fine-tuning and resume as w2v-BERT."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_corpus  # noqa: E402

from w2vbert import finetune, pretrain  # noqa: E402
from w2vbert.model.best_rq import BestRqModel, create_best_rq_model  # noqa: E402
from w2vbert.model.config import get_w2vbert_config, with_objective  # noqa: E402
from w2vbert.model.masking import compute_span_mask  # noqa: E402
from w2vbert.model.random_projection import RandomProjectionQuantizer  # noqa: E402
from w2vbert.objectives.best_rq_loss import best_rq_loss  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


def _tiny_best_rq(**overrides) -> BestRqModel:
    config = with_objective(get_w2vbert_config("tiny"), "best-rq")
    if overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)
    torch.manual_seed(0)
    return create_best_rq_model(config)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 160, 80, generator=g) * 2.0 + 5.0  # raw log-mel-like scale
    return x, torch.tensor([160, 121, 67])


def test_config_has_the_papers_numbers_converted_to_encoder_steps():
    c = with_objective(get_w2vbert_config("xl"), "best-rq")
    c.validate()
    assert (c.method, c.num_codebooks, c.num_codebook_entries, c.codebook_dim) == ("best-rq", 1, 8192, 16)
    assert c.num_contrastive_layers == 0 and c.num_mlm_layers == 24
    assert c.contrastive_weight == 0.0 and c.diversity_weight == 0.0 and c.mask_noise_std == 0.1
    # 1 % of the 10 ms frames start a 400 ms span: per 40 ms step 1 - 0.99^4, 10 steps
    assert c.mask_span_len == 10 and c.mask_p == pytest.approx(1 - 0.99**4)
    c2 = with_objective(get_w2vbert_config("mini").__class__(frame_stride=2), "best-rq")
    assert c2.mask_span_len == 20 and c2.mask_p == pytest.approx(1 - 0.99**2)
    with pytest.raises(ValueError, match="num_contrastive_layers"):
        import dataclasses

        dataclasses.replace(c, num_contrastive_layers=2, num_mlm_layers=22).validate()


def test_targets_are_deterministic_given_the_seed_and_equal_a_hand_written_nearest_neighbour():
    q = RandomProjectionQuantizer(input_dim=12, num_codebooks=2, num_entries=50, code_dim=4, seed=7)
    same = RandomProjectionQuantizer(input_dim=12, num_codebooks=2, num_entries=50, code_dim=4, seed=7)
    other = RandomProjectionQuantizer(input_dim=12, num_codebooks=2, num_entries=50, code_dim=4, seed=8)
    assert torch.equal(q.projection, same.projection) and torch.equal(q.codebooks, same.codebooks)
    assert not torch.equal(q.projection, other.projection)
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) and unit-norm entries
    assert float(q.projection.abs().max()) <= math.sqrt(6 / (12 + 4))
    assert torch.allclose(q.codebooks.norm(dim=-1), torch.ones(2, 50))
    assert not list(q.parameters())

    x = torch.randn(5, 7, 12, generator=torch.Generator().manual_seed(1))
    out = q(x)
    assert out.code_ids.shape == (5, 7, 2) and torch.equal(out.code_ids, same(x).code_ids)

    # by hand: for each vector and codebook, the entry of least L2 distance between unit vectors
    proj, book = q.projection.double().tolist(), q.codebooks.double().tolist()
    for i in range(5):
        for t in range(7):
            vec = x[i, t].double().tolist()
            for g in range(2):
                y = [sum(vec[k] * proj[g][k][d] for k in range(12)) for d in range(4)]
                norm = math.sqrt(sum(v * v for v in y))
                y = [v / norm for v in y]
                c_norm = [math.sqrt(sum(v * v for v in c)) for c in book[g]]
                dists = [
                    sum((c[d] / n - y[d]) ** 2 for d in range(4)) for c, n in zip(book[g], c_norm)
                ]
                assert int(out.code_ids[i, t, g]) == min(range(50), key=dists.__getitem__)


def test_model_targets_are_the_codes_of_the_clean_stacked_normalised_fbank_at_masked_steps():
    model = _tiny_best_rq().eval()
    x, x_lens = _batch()
    out = model(x, x_lens, generator=torch.Generator().manual_seed(3))
    fe = model.encoder.feature_encoder
    stacked = fe.stacked_input(x, x_lens)  # (N, S, 4 * 80)
    assert torch.equal(out.target_ids, model.quantizer(stacked[out.mask]).code_ids)
    # the normalised input the quantizer sees has zero mean / unit variance per utterance and bin
    normed = fe.normalize(x, x_lens)[0]
    assert float(normed.mean(0).abs().max()) < 1e-4 and float((normed.var(0, unbiased=False) - 1).abs().max()) < 1e-3


def test_masked_fbank_frames_are_replaced_by_noise_of_the_configured_scale(monkeypatch):
    model = _tiny_best_rq(mask_noise_std=0.1).eval()
    fe = model.encoder.feature_encoder
    seen = {}
    forward = type(fe).forward

    def spy(self, x, x_lens, *, normalized=False):
        seen["x"], seen["normalized"] = x.detach().clone(), normalized
        return forward(self, x, x_lens, normalized=normalized)

    monkeypatch.setattr(type(fe), "forward", spy)
    x, x_lens = _batch()
    out = model(x, x_lens, generator=torch.Generator().manual_seed(4))
    clean = fe.normalize(x, x_lens)
    frame_mask = out.mask.repeat_interleave(fe.frame_stride, dim=1)[:, : x.size(1)]
    assert seen["normalized"] is True
    assert torch.equal(seen["x"][~frame_mask], clean[~frame_mask])  # unmasked frames untouched
    noise = seen["x"][frame_mask]
    assert noise.numel() > 1000 and abs(float(noise.std()) - 0.1) < 0.01 and abs(float(noise.mean())) < 0.01


def test_masked_fraction_matches_the_papers_parameters():
    c = with_objective(get_w2vbert_config("xl"), "best-rq")
    seq_lens = torch.full((256,), 1000)
    mask = compute_span_mask(seq_lens, 1000, c.mask_p, c.mask_span_len, c.min_num_mask_spans,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    expected = 1 - (1 - 0.01) ** 40  # a 10 ms frame is masked iff one of the 40 before starts a span
    # steps near the end cannot start a full span: the expected fraction there is a little lower
    assert abs(float(mask[:, : 1000 - 10].float().mean()) - expected) < 0.01
    starts = mask[:, 1:] & ~mask[:, :-1]
    spans = starts.sum() / mask.size(0)
    assert 5 < float(spans) < 30  # ~ 990 * p * (1 - p)^10 disjoint runs, not one big block


def test_the_loss_counts_masked_steps_only_and_equals_cross_entropy_over_them():
    model = _tiny_best_rq().train()
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["seqs"] = output

    model.encoder.mlm.register_forward_hook(keep)
    x, x_lens = _batch()
    out = model(x, x_lens, generator=torch.Generator().manual_seed(5))
    loss = best_rq_loss(out)
    logits = out.mlm_logits.float().reshape(-1, out.mlm_logits.size(-1))
    assert torch.allclose(loss.mlm, F.cross_entropy(logits, out.target_ids.reshape(-1)))
    assert loss.num_masked == int(out.mask.sum()) > 0
    loss.aggregate.backward()
    grad = captured["seqs"].grad.abs().sum(dim=2)  # (N, S)
    assert float(grad[~out.mask].max()) == 0.0 and bool((grad[out.mask] > 0).all())
    assert all(b.grad is None for b in model.buffers())


def test_a_few_steps_on_a_fixed_batch_lower_the_loss_and_leave_the_quantizer_unchanged():
    model = _tiny_best_rq(num_codebook_entries=64, num_codebooks=2).train()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    x, x_lens = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = model(x, x_lens, generator=torch.Generator().manual_seed(0))
        loss = best_rq_loss(out)
        opt.zero_grad()
        loss.aggregate.backward()
        opt.step()
        losses.append(float(loss.aggregate))
    assert losses[-1] < 0.8 * losses[0], losses
    after = model.quantizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---- through the recipe's pre-training, resume and fine-tuning ----------------------------

COMMON = [*tiny_corpus.TRAIN_FLAGS, "--no-tensorboard", "--model-preset", "tiny"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bestrq")
    train, dev = tiny_corpus.make_cuts(root, "train", 6), tiny_corpus.make_cuts(root, "dev", 2, seed=1)
    return {"root": root, "train": train, "dev": dev, "bpe": tiny_corpus.make_bpe(root)}


def _pre_argv(c, exp_dir: Path, *extra: str) -> list[str]:
    return ["--train-cuts", str(c["train"]), "--valid-cuts", str(c["dev"]), "--exp-dir",
            str(exp_dir), "--objective", "best-rq", "--num-codebook-entries", "64",
            "--save-every-n", "2", *COMMON, *extra]  # fmt: skip


def test_pretraining_resumes_exactly_keeps_the_quantizer_and_fine_tunes(corpus, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.main(_pre_argv(corpus, straight, "--num-epochs", "2"))
    pretrain.main(_pre_argv(corpus, resumed, "--num-epochs", "2", "--max-steps", "1"))
    assert (resumed / "checkpoint-1.pt").is_file()
    pretrain.main(_pre_argv(corpus, resumed, "--num-epochs", "2"))

    a = torch.load(straight / "epoch-2.pt", weights_only=False)
    b = torch.load(resumed / "epoch-2.pt", weights_only=False)
    assert a["batch_idx_train"] == b["batch_idx_train"] >= 3
    for key in ("model", "model_avg"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["params"]["objective"] == "best-rq" and a["params"]["model_config"]["method"] == "best-rq"

    fresh = RandomProjectionQuantizer(input_dim=4 * 80, num_codebooks=1, num_entries=64,
                                      code_dim=16, seed=0)  # fmt: skip
    for name, ckpt in (("straight", a), ("resumed", b)):
        for buf in ("projection", "codebooks"):
            assert torch.equal(ckpt["model"][f"quantizer.{buf}"], getattr(fresh, buf)), (name, buf)
    import json

    rows = [json.loads(r) for r in (straight / "metrics.jsonl").read_text().splitlines()]
    train_row = next(r for r in rows if r["split"] == "train")
    assert {"mlm", "mlm_acc", "code_perplexity", "code_usage"} <= set(train_row)
    assert "contrastive" not in train_row

    ft = tmp_path / "ft"
    finetune.main(["--init-from", str(straight / "epoch-2.pt"), "--bpe-model", str(corpus["bpe"]),
                   "--train-cuts", str(corpus["train"]), "--valid-cuts", str(corpus["dev"]),
                   "--exp-dir", str(ft), "--decoder-dim", "16", "--joiner-dim", "16",
                   "--num-epochs", "1", *COMMON[:-2]])  # fmt: skip
    f = torch.load(ft / "epoch-1.pt", weights_only=False)
    assert f["params"]["model_config"]["method"] == "best-rq"
    assert not any(k.startswith(("quantizer.", "mlm_head")) for k in f["model"])
    enc = {k[len("encoder."):]: v for k, v in a["model"].items() if k.startswith("encoder.")}
    assert enc and all(k.startswith(("feature_encoder", "contrastive", "mlm")) for k in enc)
