"""W2VBertModel / W2VBertEncoder: presets, shapes, gradient paths, batch consistency."""

import dataclasses

import pytest
import torch

from w2vbert.model.config import W2VBertConfig, get_w2vbert_config, preset_names, with_objective
from w2vbert.model.w2vbert import create_w2vbert_encoder, create_w2vbert_model
from w2vbert.objectives.w2vbert_loss import w2vbert_loss

# Expected parameter counts of the whole pre-training model (encoder + quantizer + heads).
EXPECTED_PARAMS = {
    "tiny": (10e3, 100e3),
    "mini": (3e6, 8e6),
    "small": (11e6, 14e6),
    "base": (85e6, 105e6),
    "xl": (0.55e9, 0.65e9),
    "xxl": (0.95e9, 1.10e9),
    "w2v-bert-2.0": (0.58e9, 0.60e9),
    "w2v-bert-2.0-tiny": (10e3, 200e3),
}


@pytest.fixture(autouse=True)
def deterministic_rng():
    torch.manual_seed(0)


def _tiny(**changes) -> W2VBertConfig:
    return dataclasses.replace(get_w2vbert_config("tiny"), **changes)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 120, 80, generator=g)
    return x, torch.tensor([120, 77, 45])


@pytest.mark.parametrize("name", preset_names())
def test_preset_parameter_counts_are_in_the_expected_range(name, capsys):
    config = get_w2vbert_config(name)
    with torch.device("meta"):
        model = create_w2vbert_model(config)
    count = sum(p.numel() for p in model.parameters())
    encoder_count = sum(p.numel() for p in model.encoder.parameters())
    with capsys.disabled():
        print(f"\n{name}: {count / 1e6:.2f}M parameters ({encoder_count / 1e6:.2f}M encoder)")
    low, high = EXPECTED_PARAMS[name]
    assert low <= count <= high
    assert len(model.encoder.contrastive.blocks) == config.num_contrastive_layers
    assert len(model.encoder.mlm.blocks) == config.num_mlm_layers


def test_xl_and_xxl_have_the_paper_block_layout():
    xl, xxl = get_w2vbert_config("xl"), get_w2vbert_config("xxl")
    assert (xl.model_dim, xl.num_heads, xl.num_contrastive_layers, xl.num_mlm_layers) == (
        1024,
        8,
        12,
        12,
    )
    assert (xxl.num_contrastive_layers, xxl.num_mlm_layers) == (12, 30)
    assert (xl.num_codebooks, xl.num_codebook_entries) == (1, 1024)


@pytest.mark.parametrize("name", ["tiny", "mini"])
def test_pretraining_output_shapes(name):
    config = get_w2vbert_config(name)
    model = create_w2vbert_model(config)
    x, x_lens = _batch()
    out = model(x, x_lens)
    num_masked = int(out.mask.sum())
    g, v, c = config.num_codebooks, config.num_codebook_entries, config.codebook_dim
    assert out.mask.shape == (3, 30) and torch.equal(out.seq_lens, torch.tensor([30, 20, 12]))
    assert torch.equal(out.num_masked, out.mask.sum(dim=1))
    assert out.quantized_targets.shape == (num_masked, c)
    assert out.projected_context.shape == (num_masked, c)
    assert out.target_ids.shape == (num_masked, g)
    assert out.mlm_logits.shape == (num_masked, g, v)
    assert out.code_probs.shape == (g, v)
    assert (out.num_masked >= 1).all()
    encoder_out, encoder_lens = model.encoder(x, x_lens)
    assert encoder_out.shape == (3, 30, config.model_dim) and torch.equal(
        encoder_lens, out.seq_lens
    )


def test_mlm_loss_gradient_reaches_the_contrastive_module_and_feature_encoder_not_the_quantizer():
    model = create_w2vbert_model(_tiny())
    out = model(*_batch())
    loss = w2vbert_loss(out)
    loss.mlm.backward()
    for name, module in [
        ("contrastive", model.encoder.contrastive),
        ("feature_encoder", model.encoder.feature_encoder),
    ]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    # Targets are discrete ids: the quantizer gets nothing from L_m.
    assert all(p.grad is None for p in model.quantizer.parameters())
    assert not out.target_ids.requires_grad


def test_contrastive_loss_trains_the_quantizer_and_not_the_mlm_module():
    model = create_w2vbert_model(_tiny())
    w2vbert_loss(model(*_batch())).contrastive.backward()
    assert model.quantizer.codebooks.grad is not None
    assert all(p.grad is None for p in model.encoder.mlm.parameters())


def test_a_few_adam_steps_on_a_fixed_batch_lower_the_loss():
    model = create_w2vbert_model(_tiny())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, x_lens = _batch()

    def step_loss() -> torch.Tensor:
        torch.manual_seed(1)  # same masks, noise, Gumbel draws and distractors every step
        return w2vbert_loss(model(x, x_lens)).aggregate

    with torch.no_grad():
        initial = step_loss().item()
    for _ in range(15):
        optimizer.zero_grad()
        step_loss().backward()
        optimizer.step()
    with torch.no_grad():
        final = step_loss().item()
    assert final < initial - 0.3, (initial, final)


def test_encoder_padded_batch_equals_each_item_alone_in_eval_mode():
    encoder = create_w2vbert_encoder(_tiny(num_contrastive_layers=2)).eval()
    x, x_lens = _batch()
    out, out_lens = encoder(x, x_lens)
    for i, n in enumerate(x_lens.tolist()):
        alone, alone_lens = encoder(x[i : i + 1, :n], x_lens[i : i + 1])
        assert alone_lens.item() == out_lens[i].item()
        torch.testing.assert_close(out[i, : alone.size(1)], alone[0], atol=1e-4, rtol=1e-4)


def test_encoder_state_dict_keys_equal_the_encoder_subkeys_of_the_model():
    config = _tiny()
    model_keys = {
        k[len("encoder.") :]
        for k in create_w2vbert_model(config).state_dict()
        if k.startswith("encoder.")
    }
    assert model_keys == set(create_w2vbert_encoder(config).state_dict())


def test_ablation_objectives_build_only_the_heads_they_train():
    contrastive = with_objective(_tiny(), "contrastive")
    model = create_w2vbert_model(contrastive)
    assert model.mlm_head is None and len(model.encoder.mlm.blocks) == 0
    assert len(model.encoder.contrastive.blocks) == 2
    loss = w2vbert_loss(model(*_batch()), **contrastive.loss_kwargs())
    assert loss.mlm.item() == 0.0 and loss.contrastive.item() > 0

    mlm_only = with_objective(_tiny(), "mlm")
    model = create_w2vbert_model(mlm_only)
    assert model.final_proj is None and len(model.encoder.contrastive.blocks) == 0
    loss = w2vbert_loss(model(*_batch()), **mlm_only.loss_kwargs())
    assert loss.contrastive.item() == 0.0 and loss.diversity.item() > 0
    loss.aggregate.backward()
    assert all(p.grad is not None for p in model.parameters())  # DDP needs no unused-param search


def test_set_num_updates_anneals_the_gumbel_temperature():
    model = create_w2vbert_model(_tiny())
    model.set_num_updates(200_000)
    out = model(*_batch())
    assert out.temperature == pytest.approx(2.0 * 0.999995**200_000)


def test_config_validate_lists_every_problem_at_once():
    bad = _tiny(model_dim=30, num_heads=4, mask_p=1.5, conv_kernel_size=4, mlm_weight=0.0)
    with pytest.raises(ValueError) as info:
        bad.validate()
    message = str(info.value)
    for field in ("`mask_p`", "`model_dim`", "`conv_kernel_size`", "`num_mlm_layers`"):
        assert field in message
    with pytest.raises(ValueError, match="`name` must be one of"):
        get_w2vbert_config("huge")


def test_every_parameter_of_the_default_model_gets_a_gradient():
    model = create_w2vbert_model(_tiny())
    w2vbert_loss(model(*_batch())).aggregate.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_stacked_input_is_the_normalised_fbank_stacked_per_encoder_step():
    model = create_w2vbert_model(_tiny())
    fe = model.encoder.feature_encoder
    x, x_lens = _batch()
    stacked = fe.stacked_input(x, x_lens)  # (N, S, 4 * 80)
    feats, seq_lens = fe(x, x_lens)
    assert stacked.shape == (3, feats.size(1), 4 * 80)
    # utterance 1 alone (77 valid frames): per-bin mean/var normalisation, 4 frames per step
    xs = x[1, :77]
    norm = (xs - xs.mean(0)) / (xs.var(0, unbiased=False) + 1e-5).sqrt()
    s = int(seq_lens[1])
    padded = torch.cat((norm, norm.new_zeros(4 * s - 77, 80)))
    torch.testing.assert_close(stacked[1, :s], padded.reshape(s, 320), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("quantizer_input", ["fbank", "features"])
def test_quantizer_input_selects_what_the_quantizer_sees(quantizer_input):
    config = _tiny(quantizer_input=quantizer_input)
    model = create_w2vbert_model(config)
    expected = 4 * 80 if quantizer_input == "fbank" else config.model_dim
    assert model.quantizer.weight_proj.in_features == expected
    out = model(*_batch())
    w2vbert_loss(out, **config.loss_kwargs()).aggregate.backward()
    grads = [p.grad for p in model.encoder.feature_encoder.parameters()]
    assert all(g is not None for g in grads)


def test_target_projection_and_learned_mask_vector_get_gradients():
    model = create_w2vbert_model(_tiny())
    assert model.target_proj is not None and model.mask_embed is not None
    out = model(*_batch())
    w2vbert_loss(out, **_tiny().loss_kwargs()).aggregate.backward()
    assert model.target_proj.weight.grad.abs().sum() > 0
    assert model.mask_embed.grad.abs().sum() > 0
    plain = create_w2vbert_model(_tiny(target_proj=False, mask_fill="random"))
    assert plain.target_proj is None and plain.mask_embed is None
    assert plain(*_batch()).quantized_targets.size(1) == out.quantized_targets.size(1)

