"""Building models from a config or from a checkpoint's ``params``: the one place that knows how
a saved model is rebuilt, used by fine-tuning, decoding, averaging and export.

``params`` are the JSON-friendly dict every training checkpoint carries: ``kind`` ("pretrain" or
"finetune") and ``model_config`` (a :class:`W2VBertConfig` as a dict); a fine-tuning checkpoint
adds ``vocab_size``, ``blank_id``, ``context_size``, ``decoder_dim``, ``joiner_dim``,
``decoder_type``, ``joiner_activation`` and ``ctc``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from w2vbert.model.best_rq import BestRqModel, create_best_rq_model
from w2vbert.model.config import W2VBertConfig
from w2vbert.model.transducer import Transducer, create_transducer
from w2vbert.model.w2vbert import W2VBertModel, create_w2vbert_encoder, create_w2vbert_model

logger = logging.getLogger(__name__)

# W2VBertConfig fields that define the encoder's weights and computation: an encoder loaded from a
# checkpoint must agree on them (dropouts, masking and pre-training settings may differ).
ENCODER_FIELDS = (
    "num_mel_bins",
    "frame_stride",
    "feature_encoder_channels",
    "input_norm",
    "model_dim",
    "num_heads",
    "ffn_dim",
    "conv_kernel_size",
    "num_contrastive_layers",
    "num_mlm_layers",
    "rotary_base",
    "frontend",
    "position_encoding",
    "shaw_left_context",
    "shaw_right_context",
    "conv_causal",
    "conv_bias",
)


def encoder_config_mismatches(saved: W2VBertConfig, requested: W2VBertConfig) -> list[str]:
    """``"<field> (checkpoint X, requested Y)"`` for each :data:`ENCODER_FIELDS` entry that differs."""
    return [
        f"{k} (checkpoint {getattr(saved, k)!r}, requested {getattr(requested, k)!r})"
        for k in ENCODER_FIELDS
        if getattr(saved, k) != getattr(requested, k)
    ]


def config_from_params(params: dict[str, Any]) -> W2VBertConfig:
    """The :class:`W2VBertConfig` saved in checkpoint ``params``."""
    if "model_config" not in params:
        raise ValueError(f"Checkpoint params have no 'model_config'; they have {sorted(params)}.")
    return W2VBertConfig(**params["model_config"])


def state_mismatches(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, ``"<key> (shape) vs (shape)"``) of ``state`` against ``own``, sorted."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    return missing, unexpected, shapes


INPUT_STATS = "encoder.feature_encoder.input_stats."
"""State entries of the stored input statistics (``input_norm="global"``)."""


def load_encoder_weights(
    encoder: nn.Module,
    model_state: dict[str, torch.Tensor],
    source: str,
    *,
    may_miss: tuple[str, ...] = (),
) -> None:
    """Load ``encoder.*`` entries of ``model_state`` into ``encoder``; list every mismatch in the
    error. Entries of ``encoder`` under the prefixes ``may_miss`` (model-state keys, e.g.
    :data:`INPUT_STATS`) may be absent from ``model_state``: they keep their values."""
    state = {k[len("encoder.") :]: v for k, v in model_state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    missing, unexpected, shapes = state_mismatches(own, state)
    missing = [k for k in missing if not ("encoder." + k).startswith(may_miss)]
    state = {**{k: v for k, v in own.items() if k not in state}, **state}
    if missing or unexpected or shapes:
        raise ValueError(
            f"Encoder weights of {source} do not fit the encoder: missing {missing[:20]}, "
            f"unexpected {unexpected[:20]}, shape mismatches {shapes[:20]}."
        )
    encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    logger.info(
        f"Loaded {len(state)} encoder tensors from {source} (quantizer and pre-training heads dropped)"
    )


def create_pretraining_model(config: W2VBertConfig) -> W2VBertModel | BestRqModel:
    """The pre-training model of ``config.method``: w2v-BERT (and its ablations) or BEST-RQ."""
    if config.method == "best-rq":
        return create_best_rq_model(config)
    return create_w2vbert_model(config)


PRETRAINING_PARTS = ("mask_embed", "quantizer.", "final_proj.", "target_proj.", "mlm_head.")
"""State entries of a pre-training model outside its encoder: a source without them (a Hugging
Face encoder) leaves them freshly initialised."""


def load_pretraining_weights(
    model: nn.Module, state: dict[str, torch.Tensor], source: str
) -> list[str]:
    """Load ``state`` (our keys) into a pre-training model; returns the entries left freshly
    initialised. Every encoder entry must be there with its shape, and nothing may be left over:
    the error lists the missing, unexpected and mis-shaped keys. NaN rows (an MLM head that
    predicts fewer codebooks than the quantizer has) keep the model's fresh values."""
    own = model.state_dict()
    missing, unexpected, shapes = state_mismatches(own, state)
    missing_encoder = [k for k in missing if not k.startswith(PRETRAINING_PARTS)]
    if missing_encoder or unexpected or shapes:
        raise ValueError(
            f"{source} does not fit the model: missing {missing_encoder[:20]}, unexpected "
            f"{unexpected[:20]}, shape mismatches {shapes[:20]} (the config fields behind them: "
            f"{', '.join(ENCODER_FIELDS)}, num_codebooks, num_codebook_entries, codebook_dim)."
        )
    merged = dict(own)
    fresh = list(missing)
    for k, v in state.items():
        v = v.to(own[k].dtype)
        nan = torch.isnan(v)
        if bool(nan.any()):
            v = torch.where(nan, own[k], v)
            fresh.append(f"{k} ({int(nan.any(dim=-1).sum()) if v.dim() > 1 else int(nan.sum())} rows)")
        merged[k] = v
    model.load_state_dict(merged)
    logger.info(
        f"Loaded {len(state)} tensors from {source}; freshly initialised: {fresh or 'nothing'}"
    )
    return fresh


def build_transducer_from_params(params: dict[str, Any]) -> Transducer:
    """The fine-tuned model described by a fine-tuning checkpoint's ``params`` (random weights)."""
    if params.get("kind") != "finetune":
        raise ValueError(
            f"Expected a fine-tuning checkpoint (params kind 'finetune'), but kind is {params.get('kind')!r}."
        )
    encoder = create_w2vbert_encoder(config_from_params(params))
    return create_transducer(
        encoder,
        encoder.output_dim,
        params["vocab_size"],
        decoder_dim=params["decoder_dim"],
        joiner_dim=params["joiner_dim"],
        context_size=params["context_size"],
        blank_id=params["blank_id"],
        decoder_type=params["decoder_type"],
        joiner_activation=params["joiner_activation"],
        ctc=params["ctc"],
    )


def load_transducer(state: dict[str, torch.Tensor], params: dict[str, Any]) -> Transducer:
    """The fine-tuned model of ``params`` with the weights ``state``, in eval mode (for inference)."""
    model = build_transducer_from_params(params)
    model.load_state_dict(state)
    return model.eval()
