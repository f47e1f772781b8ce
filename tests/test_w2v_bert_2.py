"""w2v-BERT 2.0 weights: the Hugging Face loader against transformers' own model on the same
weights, our features against SeamlessM4TFeatureExtractor, the fairseq conformer_shaw layout with
its quantizer and MLM head, the converter, and continued pre-training from them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))

import make_tiny_w2v_bert_2  # noqa: E402
import tiny_corpus  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel  # noqa: E402

from w2vbert import convert, finetune, pretrain  # noqa: E402
from w2vbert.data.fbank import check_feature_types, fbank_extractor  # noqa: E402
from w2vbert.model.config import get_w2vbert_config  # noqa: E402
from w2vbert.model.factory import (  # noqa: E402
    config_from_params,
    create_pretraining_model,
    load_encoder_weights,
    load_pretraining_weights,
)
from w2vbert.model.feature_encoder import StackedFbankFrontend  # noqa: E402
from w2vbert.model.w2v_bert_2 import CheckpointFormatError, load_hf  # noqa: E402
from w2vbert.model.w2vbert import create_w2vbert_encoder  # noqa: E402
from w2vbert.objectives.w2vbert_loss import w2vbert_loss  # noqa: E402
from w2vbert.training.init_checkpoint import load_init_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "w2v-bert-2.0-tiny"
    make_tiny_w2v_bert_2.main(["--out-dir", str(out), "--layers", "3", "--dim", "32"])
    return out


def _waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    waves = []
    for n in (16000, 11234, 7001):  # three lengths, two of them odd in frames
        t = np.arange(n) / 16000
        chirp = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t))
        waves.append((chirp + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return waves


def _padded_fbank(waves) -> tuple[torch.Tensor, torch.Tensor]:
    extractor = fbank_extractor(kind="w2v-bert-2.0")
    feats = [torch.from_numpy(extractor.extract_exact(w, 16000)) for w in waves]
    lens = torch.tensor([f.size(0) for f in feats])
    x = torch.zeros(len(feats), int(lens.max()), 80)
    for i, f in enumerate(feats):
        x[i, : f.size(0)] = f
    return x, lens


def test_init_from_loader_gives_transformers_last_hidden_state_on_a_padded_batch(hf_dir):
    reference = Wav2Vec2BertModel.from_pretrained(hf_dir).eval()
    ckpt = load_init_checkpoint(str(hf_dir))  # what --init-from DIR loads
    config = config_from_params(ckpt["params"])
    assert (config.frontend, config.position_encoding, config.conv_causal) == ("stacked", "shaw", True)
    encoder = create_w2vbert_encoder(config).eval()
    load_encoder_weights(encoder, ckpt["model"], str(hf_dir))

    x, lens = _padded_fbank(_waves())
    with torch.no_grad():
        ours, steps = encoder(x, lens)
        inputs = encoder.feature_encoder.stacked_input(x, lens)  # (N, S, 160)
        mask = (torch.arange(inputs.size(1))[None] < steps[:, None]).long()
        ref = reference(input_features=inputs, attention_mask=mask).last_hidden_state
    assert len(set(steps.tolist())) == 3
    for i, n in enumerate(steps.tolist()):
        diff = float((ours[i, :n] - ref[i, :n]).abs().max())
        assert diff <= 1e-4, (i, diff)
    assert float(ref.abs().mean()) > 0.1  # not a degenerate (all-zero) comparison


def ours_frames(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    return StackedFbankFrontend(model_dim=8).normalize(x, lens)


def test_w2v_bert_2_fbank_matches_seamless_feature_extractor_after_its_normalisation():
    waves = _waves()
    ref = SeamlessM4TFeatureExtractor()(waves, sampling_rate=16000, return_tensors="pt", padding=True)
    x, lens = _padded_fbank(waves)
    ours = StackedFbankFrontend(model_dim=8).stacked_input(x, lens)
    valid = ref["attention_mask"].sum(dim=1)
    assert valid.tolist() == [n // 2 for n in lens.tolist()]
    for i, n in enumerate(valid.tolist()):
        diff = float((ours[i, :n] - ref["input_features"][i, :n]).abs().max())
        assert diff <= 2e-4, (i, diff)
    # what Lhotse stores: 2 frames more that keep the normalisation, so the real frames normalise
    # exactly as above
    stored = [torch.from_numpy(fbank_extractor(kind="w2v-bert-2.0").extract(w, 16000)) for w in waves]
    assert [f.size(0) for f in stored] == [(w.size + 80) // 160 for w in waves] == [n + 2 for n in lens.tolist()]
    for i, f in enumerate(stored):
        normed = StackedFbankFrontend(model_dim=8).normalize(f[None], torch.tensor([f.size(0)]))[0]
        n = int(lens[i])
        assert float((normed[:n] - ours_frames(x, lens)[i, :n]).abs().max()) <= 1e-4
    # the recipe's default (icefall) fbank is a different one: the same test fails with it
    icefall = torch.from_numpy(fbank_extractor().extract(waves[0], 16000))
    assert icefall.size(0) != x[0, : lens[0]].size(0)  # snip_edges differs


def test_stored_features_of_the_other_fbank_are_an_error_naming_both(tmp_path):
    cuts = tiny_corpus.make_cuts(tmp_path, "train", 2)
    from lhotse import CutSet

    with pytest.raises(ValueError, match="fbank 'icefall'.*expects fbank 'w2v-bert-2.0'"):
        check_feature_types(CutSet.from_file(cuts), "w2v-bert-2.0", str(cuts))
    check_feature_types(CutSet.from_file(cuts), "icefall", str(cuts))


def test_a_mismatched_or_partial_hf_source_is_an_error_listing_why(hf_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((hf_dir / "config.json").read_text())
    config["position_embeddings_type"] = "rotary"
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointFormatError, match="position_embeddings_type is 'rotary'"):
        load_hf(bad)

    config_ok, state = load_hf(hf_dir)
    del state["encoder.mlm.blocks.0.attn.rel_k.weight"]
    state["encoder.extra.weight"] = torch.zeros(1)
    model = create_pretraining_model(config_ok)
    with pytest.raises(ValueError, match=r"missing \['encoder.mlm.blocks.0.attn.rel_k.weight'\], "
                                         r"unexpected \['encoder.extra.weight'\]"):  # fmt: skip
        load_pretraining_weights(model, state, "test")


def test_a_missing_hf_key_is_an_error_naming_it(hf_dir):
    from safetensors.torch import load_file

    from w2vbert.model.w2v_bert_2 import config_from_hf, convert_hf_state

    config = config_from_hf(json.loads((hf_dir / "config.json").read_text()))
    state = load_file(str(hf_dir / "model.safetensors"))
    del state["encoder.layers.1.self_attn.linear_k.weight"]
    with pytest.raises(CheckpointFormatError) as e:
        convert_hf_state(state, config)
    assert "1 keys are missing (first: ['encoder.layers.1.self_attn.linear_k.weight']" in str(e.value)
    assert "linear_q" not in str(e.value) and "linear_v" not in str(e.value)
    assert "no place in the model" not in str(e.value)  # nothing in it is unexpected
    state["encoder.layers.1.self_attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointFormatError, match=r"linear_k\.weight'\].*; 1 keys have no place "
                                                    r"in the model \(first: \['encoder\.layers\.1\."
                                                    r"self_attn\.extra\.weight'\]\)"):  # fmt: skip
        convert_hf_state(state, config)


# ---- continued pre-training objective ------------------------------------------------------


def test_w2v_bert_2_continues_with_mlm_on_the_first_codebook_and_two_mask_spans(hf_dir):
    preset = get_w2vbert_config("w2v-bert-2.0")
    assert (preset.num_codebooks, preset.num_target_codebooks, preset.min_num_mask_spans) == (2, 1, 2)
    config = config_from_params(load_init_checkpoint(str(hf_dir))["params"])  # --init-from DIR
    assert (config.num_target_codebooks, config.min_num_mask_spans) == (1, 2)
    v = config.num_codebook_entries
    model = create_pretraining_model(config).eval()
    assert model.mlm_head.out_features == v  # one softmax over the first codebook
    x, lens = _padded_fbank(_waves())
    with torch.no_grad():
        out = model(x, lens, generator=torch.Generator().manual_seed(0))
        loss = w2vbert_loss(out, **config.loss_kwargs(), generator=torch.Generator().manual_seed(1))
    assert out.target_ids.shape[1] == 2 and out.mlm_logits.shape[1:] == (1, v)
    expected = torch.nn.functional.cross_entropy(out.mlm_logits[:, 0], out.target_ids[:, 0])
    assert torch.allclose(loss.mlm, expected)
    assert model.min_num_mask_spans == 2

    import dataclasses

    both = dataclasses.replace(config, num_target_codebooks=2)  # --num-target-codebooks 2
    model = create_pretraining_model(both).eval()
    assert model.mlm_head.out_features == 2 * v
    with torch.no_grad():
        out = model(x, lens, generator=torch.Generator().manual_seed(0))
        loss = w2vbert_loss(out, **both.loss_kwargs(), generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.cross_entropy(out.mlm_logits.reshape(-1, v), out.target_ids.reshape(-1))
    assert out.mlm_logits.shape[1:] == (2, v) and torch.allclose(loss.mlm, expected)
    with pytest.raises(ValueError, match=r"`num_target_codebooks` must be in \[1, num_codebooks=2\]"):
        dataclasses.replace(config, num_target_codebooks=3).validate()


def test_pretrain_cli_flag_sets_the_target_codebooks():
    from w2vbert.training.cli import model_overrides

    args = pretrain.get_parser().parse_args(
        ["--train-cuts", "x", "--model-preset", "w2v-bert-2.0", "--num-target-codebooks", "2"]
    )
    assert model_overrides(args)["num_target_codebooks"] == 2


# ---- fairseq conformer_shaw.pt -------------------------------------------------------------


def _conformer_shaw_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny conformer_shaw.pt model state with fairseq's key names (those fairseq2's
    ``convert_conformer_shaw_checkpoint`` maps) and random tensors: 3 blocks of dim 32, 2 heads,
    FFN 64, kernel 5, Shaw positions 6 left / 2 right, 2 x 16 codes of dim 8, final dim 16, an
    MLM head for the first codebook."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    def ln(name: str, dim: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + r(dim), f"{name}.bias": r(dim)}

    def lin(name: str, out: int, inp: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": r(out, inp), f"{name}.bias": r(out)}

    s: dict[str, torch.Tensor] = {}
    s |= ln("layer_norm", 160) | lin("post_extract_proj", 32, 160)
    s |= {"mask_emb": r(32), "quantizer.vars": r(1, 32, 8)} | lin("quantizer.weight_proj", 32, 160)
    s |= lin("project_q", 16, 16) | lin("final_proj", 16, 32) | lin("mlm_proj", 16, 32)
    s |= ln("encoder.layer_norm", 32)
    for i in range(3):
        p = f"encoder.layers.{i}"
        for f in ("ffn1", "ffn2"):
            s |= ln(f"{p}.{f}.layer_norm", 32) | lin(f"{p}.{f}.w_1", 64, 32) | lin(f"{p}.{f}.w_2", 32, 64)
        s |= ln(f"{p}.self_attn_layer_norm", 32)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s |= lin(f"{p}.self_attn.{proj}", 32, 32)
        s[f"{p}.self_attn.rel_k_embedding.weight"] = r(9, 16)
        s |= ln(f"{p}.conv_module.layer_norm", 32) | ln(f"{p}.conv_module.layer_norm2", 32)
        s[f"{p}.conv_module.pointwise_conv1.weight"] = r(64, 32, 1)
        s[f"{p}.conv_module.depthwise_conv.weight"] = r(32, 1, 5)
        s[f"{p}.conv_module.pointwise_conv2.weight"] = r(32, 32, 1)
        s |= ln(f"{p}.final_layer_norm", 32)
    return s


@pytest.fixture(scope="module")
def shaw_pt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shaw") / "conformer_shaw.pt"
    torch.save({"model": _conformer_shaw_state(), "cfg": {"note": "fairseq"}}, path)
    return path


def test_fairseq_checkpoint_restores_quantizer_and_mlm_head_and_three_steps_lower_the_loss(shaw_pt):
    source = _conformer_shaw_state()
    ckpt = load_init_checkpoint(str(shaw_pt))
    config = config_from_params(ckpt["params"])
    assert (config.num_contrastive_layers, config.num_mlm_layers, config.model_dim) == (1, 2, 32)
    assert config.num_target_codebooks == 1  # its MLM head: 16 outputs = 1 codebook of 16
    model = create_pretraining_model(config)
    fresh = load_pretraining_weights(model, ckpt["model"], str(shaw_pt))
    assert fresh == []  # everything restored: the head predicts the first codebook, as the source's
    sd = model.state_dict()
    assert torch.equal(sd["quantizer.codebooks"], source["quantizer.vars"].reshape(2, 16, 8))
    assert torch.equal(sd["quantizer.weight_proj.weight"], source["quantizer.weight_proj.weight"])
    assert torch.equal(sd["mlm_head.weight"], source["mlm_proj.weight"])
    assert torch.equal(sd["target_proj.weight"], source["project_q.weight"])
    assert torch.equal(sd["mask_embed"], source["mask_emb"])
    qkv = torch.cat([source[f"encoder.layers.1.self_attn.{p}.weight"] for p in ("q_proj", "k_proj", "v_proj")])
    assert torch.equal(sd["encoder.mlm.blocks.0.attn.qkv.weight"], qkv)

    x, lens = _padded_fbank(_waves())
    # the restored quantizer reads what fairseq's did: the front end's LayerNorm output
    seen = {}
    hook = model.quantizer.register_forward_pre_hook(lambda _m, args: seen.setdefault("q_in", args[0]))
    model.eval()
    with torch.no_grad():
        out = model(x, lens, generator=torch.Generator().manual_seed(1))
    hook.remove()
    fe = model.encoder.feature_encoder
    assert torch.equal(seen["q_in"], fe.layer_norm(fe.stacked_input(x, lens))[out.mask])

    model.train()

    def loss() -> torch.Tensor:
        torch.manual_seed(0)  # the same mask, distractors and Gumbel noise each time
        out = model(x, lens, generator=torch.Generator().manual_seed(1))
        return w2vbert_loss(out, **config.loss_kwargs(), generator=torch.Generator().manual_seed(2)).aggregate

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = float(loss())
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss()) < first


def test_a_conformer_shaw_head_of_both_codebooks_sets_the_targets_and_is_reordered():
    import dataclasses

    from w2vbert.model.w2v_bert_2 import fit_mlm_head, from_fairseq

    state = _conformer_shaw_state()
    head = torch.randn(32, 32)  # 2 codebooks x 16 entries, rows (V, G) as fairseq2 views them
    state["mlm_proj.weight"], state["mlm_proj.bias"] = head, torch.randn(32)
    config, ours = from_fairseq({"model": state}, "conformer_shaw.pt")
    assert config.num_target_codebooks == 2
    for g in range(2):
        for v in range(16):  # our row g * V + v is the source's row v * G + g
            assert torch.equal(ours["mlm_head.weight"][g * 16 + v], head[v * 2 + g])
    first = dataclasses.replace(config, num_target_codebooks=1)  # --num-target-codebooks 1
    weight, _ = fit_mlm_head(head, state["mlm_proj.bias"], first)
    assert torch.equal(weight, head.view(16, 2, 32)[:, 0])


COMMON = [*tiny_corpus.TRAIN_FLAGS, "--no-tensorboard"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2v2corpus")
    return {"train": tiny_corpus.make_cuts(root, "train", 6), "dev": tiny_corpus.make_cuts(root, "dev", 2, seed=1),
            "bpe": tiny_corpus.make_bpe(root)}  # fmt: skip


def test_continued_pretraining_from_conformer_shaw_resumes_exactly(corpus, shaw_pt, tmp_path):
    def argv(exp: Path, *extra: str) -> list[str]:
        return ["--train-cuts", str(corpus["train"]), "--valid-cuts", str(corpus["dev"]),
                "--exp-dir", str(exp), "--init-from", str(shaw_pt), "--num-epochs", "2",
                "--save-every-n", "2", "--freeze-feature-encoder-steps", "2", "--on-the-fly-feats", *COMMON, *extra]  # fmt: skip

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.main(argv(straight))
    pretrain.main(argv(resumed, "--max-steps", "1"))
    pretrain.main(argv(resumed))
    a = torch.load(straight / "epoch-2.pt", weights_only=False)
    b = torch.load(resumed / "epoch-2.pt", weights_only=False)
    assert a["batch_idx_train"] == b["batch_idx_train"] >= 3
    for key in ("model", "model_avg"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    params = a["params"]
    assert params["init_from"] == str(shaw_pt)
    # a restored quantizer continues at the floor of its temperature schedule: 2.0 -> 0.1
    assert params["gumbel_update_offset"] == math.ceil(math.log(0.1 / 2.0) / math.log(0.999995))
    rows = [json.loads(r) for r in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(r["temperature"] == pytest.approx(0.1) for r in rows if "temperature" in r)


def test_converter_output_and_the_hf_directory_start_the_same_fine_tuning(corpus, hf_dir, tmp_path):
    out = tmp_path / "w2v-bert-2.0-tiny.pt"
    convert.main(["--source", str(hf_dir), "--out", str(out)])
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["params"]["kind"] == "pretrain" and ckpt["params"]["converted_from"]["format"] == "huggingface"
    assert any(k.startswith("quantizer.") for k in ckpt["params"]["fresh_at_conversion"])
    assert (tmp_path / "w2v-bert-2.0-tiny.pt.log").is_file()

    def ft(exp: Path, init: Path) -> dict:
        finetune.main(["--init-from", str(init), "--bpe-model", str(corpus["bpe"]), "--train-cuts",
                       str(corpus["train"]), "--valid-cuts", str(corpus["dev"]), "--exp-dir", str(exp),
                       "--decoder-dim", "16", "--joiner-dim", "16", "--num-epochs", "1",
                       "--on-the-fly-feats", *COMMON])  # fmt: skip
        return torch.load(exp / "epoch-1.pt", weights_only=False)

    from_dir, from_pt = ft(tmp_path / "ft-dir", hf_dir), ft(tmp_path / "ft-pt", out)
    assert from_dir["params"]["model_config"]["position_encoding"] == "shaw"
    assert all(torch.equal(from_dir["model"][k], from_pt["model"][k]) for k in from_dir["model"])


def test_presets_have_w2v_bert_2_sizes():
    from transformers import Wav2Vec2BertConfig

    c = get_w2vbert_config("w2v-bert-2.0")
    with torch.device("meta"):  # the released model's default config: the same encoder size
        hf = Wav2Vec2BertModel(Wav2Vec2BertConfig(mask_time_prob=0.0))
        ours = create_w2vbert_encoder(c)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    assert (c.model_dim, c.num_heads, c.ffn_dim, c.conv_kernel_size) == (1024, 16, 4096, 31)
    assert (c.num_contrastive_layers + c.num_mlm_layers, c.num_codebooks, c.num_codebook_entries) == (24, 2, 320)
    assert (c.shaw_left_context, c.shaw_right_context, c.frame_stride) == (64, 8, 2)


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    config = get_w2vbert_config("w2v-bert-2.0-tiny")
    torch.manual_seed(0)
    encoder = create_w2vbert_encoder(config).train()
    x, lens = torch.randn(2, 90, 80), torch.tensor([90, 61])

    def grads(recompute: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for stack in (encoder.contrastive, encoder.mlm):
            stack.activation_checkpointing = recompute
        encoder.zero_grad()
        torch.manual_seed(1)  # dropout draws the same in both runs
        out, _ = encoder(x, lens)
        loss = out.square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in encoder.parameters()]

    (loss_a, ga), (loss_b, gb) = grads(False), grads(True)
    assert torch.equal(loss_a, loss_b)
    assert all(torch.allclose(a, b, atol=1e-7, rtol=1e-5) for a, b in zip(ga, gb))


def test_freeze_encoder_layers_fixes_the_front_end_and_the_first_blocks():
    from w2vbert.training.finetuning import freeze_encoder_layers

    encoder = create_w2vbert_encoder(get_w2vbert_config("w2v-bert-2.0-tiny"))  # 1 + 2 blocks
    frozen = freeze_encoder_layers(encoder, 2)
    assert frozen > 0
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("mlm.blocks.1.") for n in trainable)
    with pytest.raises(ValueError, match="<= the encoder's 3 blocks"):
        freeze_encoder_layers(create_w2vbert_encoder(get_w2vbert_config("w2v-bert-2.0-tiny")), 4)
