"""Meta's w2v-BERT 2.0 weights in this recipe's model: from a Hugging Face directory (or hub id)
and from the ``conformer_shaw.pt`` checkpoint of fairseq/fairseq2.

Formats (key names established from transformers' ``convert_wav2vec2_seamless_checkpoint.py`` and
seamless_communication's ``convert_conformer_shaw_checkpoint``):

- **Hugging Face** (``huggingface-cli download facebook/w2v-bert-2.0``): ``config.json`` (a
  ``Wav2Vec2BertConfig``) + ``model.safetensors`` of ``Wav2Vec2BertModel``: the encoder only
  (``feature_projection.*``, ``encoder.layers.N.*``, ``masked_spec_embed``).
- **fairseq** ``conformer_shaw.pt`` (``{"model": state}``; what fairseq2's loader converts):
  ``layer_norm``/``post_extract_proj`` (front end), ``encoder.layers.N.{ffn1,ffn2}.{layer_norm,
  w_1,w_2}``, ``self_attn.{q,k,v,out}_proj``, ``self_attn.rel_k_embedding``,
  ``conv_module.{layer_norm,pointwise_conv1,depthwise_conv,layer_norm2,pointwise_conv2}``,
  ``final_layer_norm``, and the pre-training parts ``mask_emb``, ``quantizer.{vars,weight_proj}``,
  ``project_q``, ``final_proj``, ``mlm_proj``.
- **fairseq2** (the same after fairseq2's conversion: ``encoder_frontend.*``,
  ``encoder.layers.N.{ffn1_layer_norm,ffn1.inner_proj,...,self_attn.sdpa.rel_k_embed,...}``,
  ``masker.temporal_mask_embed``, ``quantizer.{entries,entry_proj,num_updates}``,
  ``final_target_proj``, ``final_proj``, optionally under ``w2v2_model.`` with
  ``final_bert_proj`` beside it).

The result is always a state dict of this recipe's pre-training model
(:class:`w2vbert.model.w2vbert.W2VBertModel`): ``encoder.*`` and, where the source has them,
``mask_embed``, ``quantizer.*``, ``final_proj.*``, ``target_proj.*``, ``mlm_head.*``.
Queries, keys and values become our fused ``qkv``; 1x1 convolutions become Linear weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from w2vbert.model.config import W2VBertConfig, get_w2vbert_config

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
"""``--init-from hf:facebook/w2v-bert-2.0``: a hub id (downloaded with huggingface_hub)."""

# per-block key suffixes: source -> ours (q/k/v handled apart)
_HF_BLOCK = {
    "ffn1_layer_norm": "ffn1.norm", "ffn1.intermediate_dense": "ffn1.inner",
    "ffn1.output_dense": "ffn1.outer", "ffn2_layer_norm": "ffn2.norm",
    "ffn2.intermediate_dense": "ffn2.inner", "ffn2.output_dense": "ffn2.outer",
    "self_attn_layer_norm": "attn.norm", "self_attn.linear_out": "attn.out",
    "self_attn.distance_embedding": "attn.rel_k", "conv_module.layer_norm": "conv.norm",
    "conv_module.pointwise_conv1": "conv.pointwise1", "conv_module.depthwise_conv": "conv.depthwise",
    "conv_module.depthwise_layer_norm": "conv.depthwise_norm",
    "conv_module.pointwise_conv2": "conv.pointwise2", "final_layer_norm": "final_norm",
}  # fmt: skip
_HF_QKV = ("self_attn.linear_q", "self_attn.linear_k", "self_attn.linear_v")
_HF_GLOBAL = {
    "feature_projection.layer_norm": "encoder.feature_encoder.layer_norm",
    "feature_projection.projection": "encoder.feature_encoder.proj",
    "masked_spec_embed": "mask_embed",
}

_FAIRSEQ_BLOCK = {
    "ffn1.layer_norm": "ffn1.norm", "ffn1.w_1": "ffn1.inner", "ffn1.w_2": "ffn1.outer",
    "ffn2.layer_norm": "ffn2.norm", "ffn2.w_1": "ffn2.inner", "ffn2.w_2": "ffn2.outer",
    "self_attn_layer_norm": "attn.norm", "self_attn.out_proj": "attn.out",
    "self_attn.rel_k_embedding": "attn.rel_k", "conv_module.layer_norm": "conv.norm",
    "conv_module.pointwise_conv1": "conv.pointwise1", "conv_module.depthwise_conv": "conv.depthwise",
    "conv_module.layer_norm2": "conv.depthwise_norm",
    "conv_module.pointwise_conv2": "conv.pointwise2", "final_layer_norm": "final_norm",
}  # fmt: skip
_FAIRSEQ_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
_FAIRSEQ_GLOBAL = {
    "layer_norm": "encoder.feature_encoder.layer_norm",
    "post_extract_proj": "encoder.feature_encoder.proj",
    "mask_emb": "mask_embed", "quantizer.weight_proj": "quantizer.weight_proj",
    "quantizer.vars": "quantizer.codebooks", "project_q": "target_proj",
    "final_proj": "final_proj", "mlm_proj": "mlm_head",
}  # fmt: skip
_FAIRSEQ_DROPPED = ("encoder.layer_norm",)
"""fairseq's encoder-level LayerNorm, which the model does not apply (fairseq2 drops it too)."""

_FAIRSEQ2_BLOCK = {
    "ffn1_layer_norm": "ffn1.norm", "ffn1.inner_proj": "ffn1.inner", "ffn1.output_proj": "ffn1.outer",
    "ffn2_layer_norm": "ffn2.norm", "ffn2.inner_proj": "ffn2.inner", "ffn2.output_proj": "ffn2.outer",
    "self_attn_layer_norm": "attn.norm", "self_attn.output_proj": "attn.out",
    "self_attn.sdpa.rel_k_embed": "attn.rel_k", "conv_layer_norm": "conv.norm",
    "conv.pointwise_conv1": "conv.pointwise1", "conv.depthwise_conv": "conv.depthwise",
    "conv.layer_norm": "conv.depthwise_norm", "conv.pointwise_conv2": "conv.pointwise2",
    "layer_norm": "final_norm",
}  # fmt: skip
_FAIRSEQ2_GLOBAL = {
    "encoder_frontend.post_extract_layer_norm": "encoder.feature_encoder.layer_norm",
    "encoder_frontend.model_dim_proj": "encoder.feature_encoder.proj",
    "masker.temporal_mask_embed": "mask_embed", "quantizer.entry_proj": "quantizer.weight_proj",
    "quantizer.entries": "quantizer.codebooks", "final_target_proj": "target_proj",
    "final_proj": "final_proj", "final_bert_proj": "mlm_head",
}  # fmt: skip
_FAIRSEQ2_DROPPED = ("quantizer.num_updates",)
"""The step count behind the Gumbel temperature: we anneal from our own optimiser steps."""


class CheckpointFormatError(ValueError):
    """A source that is not (or not all of) a w2v-BERT 2.0 checkpoint; the message lists why."""


# ---- configuration -------------------------------------------------------------------------


def config_from_hf(hf: dict[str, Any], *, num_mlm_layers: int | None = None) -> W2VBertConfig:
    """Our config for a ``Wav2Vec2BertConfig`` dict (``config.json``); unsupported settings are an
    error naming each field. The contrastive/MLM split is w2v-BERT 2.0's (the last 16 of 24
    blocks are MLM blocks) scaled to ``num_hidden_layers`` unless ``num_mlm_layers`` is given."""
    problems = []
    expect = {"position_embeddings_type": "relative_key", "add_adapter": False,
              "use_intermediate_ffn_before_adapter": False}  # fmt: skip
    for key, value in expect.items():
        if hf.get(key, value) != value:
            problems.append(f"{key} is {hf.get(key)!r} (supported: {value!r})")
    if hf.get("hidden_act", "swish") not in ("swish", "silu"):
        problems.append(f"hidden_act is {hf.get('hidden_act')!r} (supported: 'swish')")
    if float(hf.get("layer_norm_eps", 1e-5)) != 1e-5:
        problems.append(f"layer_norm_eps is {hf.get('layer_norm_eps')} (supported: 1e-05)")
    dim_in = int(hf.get("feature_projection_input_dim", 160))
    if dim_in % 80 != 0:
        problems.append(f"feature_projection_input_dim is {dim_in} (a multiple of 80 mel bins)")
    if problems:
        raise CheckpointFormatError(
            "This Hugging Face config is not w2v-BERT 2.0's architecture: " + "; ".join(problems)
        )
    layers = int(hf.get("num_hidden_layers", 24))
    mlm = num_mlm_layers if num_mlm_layers is not None else (layers * 2) // 3
    return dataclasses.replace(
        get_w2vbert_config("w2v-bert-2.0"),
        frame_stride=dim_in // 80,
        model_dim=int(hf.get("hidden_size", 1024)),
        num_heads=int(hf.get("num_attention_heads", 16)),
        ffn_dim=int(hf.get("intermediate_size", 4096)),
        conv_kernel_size=int(hf.get("conv_depthwise_kernel_size", 31)),
        shaw_left_context=int(hf.get("left_max_position_embeddings", 64)),
        shaw_right_context=int(hf.get("right_max_position_embeddings", 8)),
        num_contrastive_layers=layers - mlm,
        num_mlm_layers=mlm,
        feature_dropout_p=float(hf.get("feat_proj_dropout", 0.0)),
        dropout_p=float(hf.get("hidden_dropout", 0.0)),
        attn_dropout_p=float(hf.get("attention_dropout", 0.0)),
        ffn_inner_dropout_p=float(hf.get("activation_dropout", 0.0)),
    )


# ---- state dicts ---------------------------------------------------------------------------


def _block_name(config: W2VBertConfig, layer: int) -> str:
    c = config.num_contrastive_layers
    return f"encoder.contrastive.blocks.{layer}" if layer < c else f"encoder.mlm.blocks.{layer - c}"


def _convert(
    state: dict[str, Tensor],
    config: W2VBertConfig,
    *,
    layer_prefix: str,
    block_map: dict[str, str],
    qkv: tuple[str, str, str],
    global_map: dict[str, str],
    dropped: tuple[str, ...],
    source: str,
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    pattern = re.compile(rf"^{re.escape(layer_prefix)}(\d+)\.(.+)\.(weight|bias)$")
    qkv_parts: dict[tuple[int, str], dict[str, Tensor]] = {}
    num_layers = config.num_contrastive_layers + config.num_mlm_layers
    for key, value in state.items():
        if any(key == d or key.startswith(d + ".") for d in dropped):
            continue
        m = pattern.match(key)
        if m:
            layer, module, kind = int(m.group(1)), m.group(2), m.group(3)
            if layer >= num_layers:
                unexpected.append(key)
            elif module in qkv:
                qkv_parts.setdefault((layer, kind), {})[module] = value
            elif module in block_map:
                ours = f"{_block_name(config, layer)}.{block_map[module]}.{kind}"
                if module.endswith(("pointwise_conv1", "pointwise_conv2")):
                    value = value.squeeze(-1)  # Conv1d (O, I, 1) -> Linear (O, I)
                out[ours] = value
            else:
                unexpected.append(key)
            continue
        name, _, kind = key.rpartition(".")
        if key in global_map:  # parameters without .weight (mask embedding, codebook entries)
            out[global_map[key]] = value
        elif name in global_map and kind in ("weight", "bias"):
            out[f"{global_map[name]}.{kind}"] = value
        else:
            unexpected.append(key)
    missing: list[str] = []
    for (layer, kind), parts in sorted(qkv_parts.items()):
        if len(parts) != 3:  # our fused qkv needs all three
            missing += [f"{layer_prefix}{layer}.{p}.{kind}" for p in qkv if p not in parts]
            continue
        out[f"{_block_name(config, layer)}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in qkv])
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} keys are missing (first: {sorted(missing)[:20]}; a block's query, "
            f"key and value projections are needed together)"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} keys have no place in the model (first: {sorted(unexpected)[:20]})"
        )
    if problems:
        raise CheckpointFormatError(f"{source}: " + "; ".join(problems) + ".")
    return out


def convert_hf_state(state: dict[str, Tensor], config: W2VBertConfig) -> dict[str, Tensor]:
    """A ``Wav2Vec2BertModel`` state dict (also under ``wav2vec2_bert.``) -> our keys."""
    prefix = "wav2vec2_bert."
    if any(k.startswith(prefix) for k in state):  # saved from Wav2Vec2BertFor* (heads dropped)
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return _convert(state, config, layer_prefix="encoder.layers.", block_map=_HF_BLOCK, qkv=_HF_QKV,
                    global_map=_HF_GLOBAL, dropped=(), source="Hugging Face state")  # fmt: skip


def convert_fairseq_state(
    state: dict[str, Tensor], config: W2VBertConfig
) -> dict[str, Tensor]:
    """A fairseq ``conformer_shaw.pt`` (or its fairseq2 conversion) model state -> our keys; the
    codebooks become (G, V, C/G) and the MLM head is reordered to ours (see :func:`fit_mlm_head`)."""
    if "final_target_proj.weight" in state or "w2v2_model.final_target_proj.weight" in state:
        prefix = "w2v2_model."
        if any(k.startswith(prefix) for k in state):
            state = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
        out = _convert(state, config, layer_prefix="encoder.layers.", block_map=_FAIRSEQ2_BLOCK,
                       qkv=_FAIRSEQ_QKV, global_map=_FAIRSEQ2_GLOBAL, dropped=_FAIRSEQ2_DROPPED,
                       source="fairseq2 state")  # fmt: skip
    else:
        out = _convert(state, config, layer_prefix="encoder.layers.", block_map=_FAIRSEQ_BLOCK,
                       qkv=_FAIRSEQ_QKV, global_map=_FAIRSEQ_GLOBAL, dropped=_FAIRSEQ_DROPPED,
                       source="fairseq state")  # fmt: skip
    if "quantizer.codebooks" in out:
        g, v = config.num_codebooks, config.num_codebook_entries
        out["quantizer.codebooks"] = out["quantizer.codebooks"].reshape(g, v, -1)
    if "mlm_head.weight" in out:
        out["mlm_head.weight"], out["mlm_head.bias"] = fit_mlm_head(
            out["mlm_head.weight"], out["mlm_head.bias"], config
        )
    return out


def fit_mlm_head(weight: Tensor, bias: Tensor, config: W2VBertConfig) -> tuple[Tensor, Tensor]:
    """A source MLM head of ``G_src`` target codebooks, rows ordered (V, G_src) as fairseq2 views
    its logits -> our (G_tgt * V, M) head ordered (G_tgt, V), ``G_tgt =
    config.mlm_num_codebooks``: the source's first G_tgt codebooks. Codebooks the source does
    not predict keep NaN rows, which the loader replaces by fresh values."""
    g_tgt, v = config.mlm_num_codebooks, config.num_codebook_entries
    g_src = weight.size(0) // v
    if weight.size(0) % v != 0 or not 1 <= g_src <= config.num_codebooks:
        raise CheckpointFormatError(
            f"mlm head has {weight.size(0)} outputs: not 1 to {config.num_codebooks} "
            f"(num_codebooks) times the {v} codebook entries (num_codebook_entries)."
        )
    if g_src > 1:
        weight = weight.reshape(v, g_src, -1).transpose(0, 1).reshape(g_src * v, -1)
        bias = bias.reshape(v, g_src).t().reshape(-1)
    keep = min(g_src, g_tgt) * v
    full_w = weight.new_full((g_tgt * v, weight.size(1)), float("nan"))
    full_b = bias.new_full((g_tgt * v,), float("nan"))
    full_w[:keep], full_b[:keep] = weight[:keep], bias[:keep]
    return full_w, full_b


# ---- sources on disk -----------------------------------------------------------------------


def is_hf_source(source: str | Path) -> bool:
    """``hf:<id>`` or a directory with a Hugging Face ``config.json``."""
    s = str(source)
    return s.startswith(HF_PREFIX) or (Path(s).is_dir() and (Path(s) / "config.json").is_file())


def resolve_hf_directory(source: str | Path) -> Path:
    """The local directory of ``source``; ``hf:<id>`` is downloaded (needs internet access and
    ``huggingface_hub``, which transformers installs)."""
    s = str(source)
    if not s.startswith(HF_PREFIX):
        return Path(s)
    repo_id = s[len(HF_PREFIX) :]
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise CheckpointFormatError(
            f"{s}: downloading from the hub needs huggingface_hub (pip install huggingface_hub), "
            f"or download it yourself: huggingface-cli download {repo_id} --local-dir DIR"
        ) from e
    return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.bin"]))


def _read_hf_weights(directory: Path) -> dict[str, Tensor]:
    shards = sorted(directory.glob("*.safetensors"))
    if shards:
        from safetensors.torch import load_file

        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(load_file(str(shard)))
        return state
    bin_file = directory / "pytorch_model.bin"
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True)
    raise CheckpointFormatError(
        f"{directory}: no *.safetensors or pytorch_model.bin (a Hugging Face model directory has "
        f"config.json and model.safetensors)."
    )


def load_hf(source: str | Path) -> tuple[W2VBertConfig, dict[str, Tensor]]:
    """(config, our state dict) of a Hugging Face ``Wav2Vec2BertModel`` directory or ``hf:<id>``."""
    directory = resolve_hf_directory(source)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointFormatError(f"{directory}: no config.json (not a Hugging Face model directory).")
    hf = json.loads(config_file.read_text())
    if hf.get("model_type") not in (None, "wav2vec2-bert"):
        raise CheckpointFormatError(
            f"{config_file}: model_type is {hf.get('model_type')!r}, not 'wav2vec2-bert'."
        )
    config = config_from_hf(hf)
    return config, convert_hf_state(_read_hf_weights(directory), config)


def load_fairseq(path: str | Path) -> tuple[W2VBertConfig, dict[str, Tensor]]:
    """(config, our state dict) of a ``conformer_shaw.pt`` file (see :func:`from_fairseq`)."""
    return from_fairseq(torch.load(path, map_location="cpu", weights_only=False), path)


def from_fairseq(checkpoint: Any, source: str | Path) -> tuple[W2VBertConfig, dict[str, Tensor]]:
    """(config, our state dict) of a loaded ``conformer_shaw.pt`` (fairseq or fairseq2 layout):
    ``w2v-bert-2.0``'s config with the depth and dims read off the tensors."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointFormatError(f"{source}: no model state (expected {{'model': state_dict}}).")
    config = _config_from_fairseq_shapes(state)
    return config, convert_fairseq_state(state, config)


def _config_from_fairseq_shapes(state: dict[str, Tensor]) -> W2VBertConfig:
    """w2v-BERT 2.0's config with the sizes of ``state`` (so tiny test checkpoints load too)."""
    state = {k.removeprefix("w2v2_model."): v for k, v in state.items()}
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    if not layers:
        raise CheckpointFormatError("no encoder.layers.N.* keys: not a conformer_shaw checkpoint.")
    base = get_w2vbert_config("w2v-bert-2.0")

    def first(*names: str) -> Tensor:
        for n in names:
            if n in state:
                return state[n]
        raise CheckpointFormatError(f"none of {list(names)} in the checkpoint.")

    proj = first("post_extract_proj.weight", "encoder_frontend.model_dim_proj.weight")  # (M, 160)
    ffn = first("encoder.layers.0.ffn1.w_1.weight", "encoder.layers.0.ffn1.inner_proj.weight")
    rel = first("encoder.layers.0.self_attn.rel_k_embedding.weight",
                "encoder.layers.0.self_attn.sdpa.rel_k_embed.weight")  # fmt: skip
    conv = first("encoder.layers.0.conv_module.depthwise_conv.weight",
                 "encoder.layers.0.conv.depthwise_conv.weight")  # fmt: skip
    model_dim, head_dim = proj.size(0), rel.size(1)
    num_layers = max(layers) + 1
    changes: dict[str, Any] = dict(
        model_dim=model_dim, num_heads=model_dim // head_dim, ffn_dim=ffn.size(0),
        conv_kernel_size=conv.size(-1), frame_stride=proj.size(1) // 80,
        shaw_left_context=rel.size(0) - 1 - base.shaw_right_context,
        num_mlm_layers=(num_layers * 2) // 3,
        num_contrastive_layers=num_layers - (num_layers * 2) // 3,
    )  # fmt: skip
    if "quantizer.vars" in state or "quantizer.entries" in state:
        entries = first("quantizer.vars", "quantizer.entries")  # (1, G*V, C/G)
        g = base.num_codebooks
        changes.update(num_codebook_entries=entries.size(1) // g, codebook_dim=entries.size(2) * g)
    head = state.get("mlm_proj.weight", state.get("final_bert_proj.weight"))  # (G_tgt*V, M)
    v = changes.get("num_codebook_entries", base.num_codebook_entries)
    if head is not None and head.size(0) % v == 0 and 1 <= head.size(0) // v <= base.num_codebooks:
        changes["num_target_codebooks"] = head.size(0) // v  # the objective it was trained with
    return dataclasses.replace(base, **changes)


def load_external(source: str | Path) -> tuple[W2VBertConfig, dict[str, Tensor], str]:
    """(config, our state dict, format name) of a Hugging Face directory / ``hf:<id>`` or a
    fairseq(2) ``conformer_shaw.pt``."""
    if is_hf_source(source):
        config, state = load_hf(source)
        return config, state, "huggingface"
    config, state = load_fairseq(source)
    return config, state, "fairseq"


def as_checkpoint(
    config: W2VBertConfig, state: dict[str, Tensor], fmt: str, source: str | Path
) -> dict[str, Any]:
    """A converted source in this recipe's checkpoint layout (what ``--init-from`` and
    ``python -m w2vbert.convert`` use): ``{"model", "params"}`` of a pre-training checkpoint."""
    return {
        "model": state,
        "params": {
            "kind": "pretrain",
            "objective": "w2vbert",
            "model_config": dataclasses.asdict(config),
            "converted_from": {"format": fmt, "source": str(source)},
        },
    }
