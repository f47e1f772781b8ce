"""The fine-tuning task (stage 5): pruned RNN-T on a (pre-trained) w2v-BERT encoder, run by the shared loop.

The model is built from its ``params`` by :mod:`w2vbert.model.factory`, as decoding and export rebuild it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lhotse.dataset import SimpleCutSampler, SpecAugment
from torch import nn

from w2vbert.checkpoint.identity import input_record, state_dict_digest
from w2vbert.data.datasets import (
    AsrDataset,
    create_input_strategy,
    create_spec_augment,
    cut_text,
)
from w2vbert.data.filters import CutFilter, encoder_cut_filter
from w2vbert.data.sampling import DataConfig, load_train_cuts
from w2vbert.data.tokenizer import BpeTokenizer
from w2vbert.model.chunking import FULL_CONTEXT, check_chunking, parse_chunk_sizes
from w2vbert.model.config import (
    W2VBertConfig,
    get_w2vbert_config,
    preset_names,
    streaming_problems,
)
from w2vbert.model.feature_encoder import frame_sums
from w2vbert.model.factory import (
    INPUT_STATS,
    build_transducer_from_params,
    encoder_config_mismatches,
    load_encoder_weights,
)
from w2vbert.objectives.rnnt import rnnt_loss_scales, transducer_loss
from w2vbert.training.config import TrainingConfig
from w2vbert.training.init_checkpoint import load_init_checkpoint
from w2vbert.training.optim import param_groups_with_scales
from w2vbert.training.runner import TaskSpec, run_training
from w2vbert.util.dataclass_args import (
    config_to_dict,
    flag,
)

logger = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    """Fine-tuning settings besides the encoder config, the training loop and the data."""

    init_from: str = flag(
        "none",
        "Pre-training checkpoint (epoch-N.pt, checkpoint-N.pt or an averaged model "
        "from w2vbert.average), a Hugging Face w2v-BERT 2.0 directory, hf:<hub id>, or a "
        "fairseq(2) conformer_shaw.pt, whose encoder weights start the encoder; 'none': from scratch.",
    )
    init_use_averaged_model: bool = flag(
        False, "Take the encoder from the checkpoint's averaged model (model_avg)."
    )
    model_preset: str | None = flag(
        None,
        "Encoder preset; default: the --init-from checkpoint's config.",
        choices=tuple(preset_names()),
    )
    bpe_model: Path = flag(
        Path("data/lang_bpe_500/bpe.model"), "Sentencepiece model (<blk> must be id 0)."
    )
    prune_range: int = flag(5, "Pruned RNN-T: symbols per frame kept.")
    lm_scale: float = flag(0.25, "Pruned RNN-T: LM scale of the smoothed loss.")
    am_scale: float = flag(0.0, "Pruned RNN-T: AM scale of the smoothed loss.")
    simple_loss_scale: float = flag(0.5, "Weight of the simple loss after warm-up.")
    model_warm_step: int = flag(
        3000, "Updates over which the simple/pruned loss scales warm up (icefall)."
    )
    ctc_loss_scale: float = flag(0.0, "Weight of an auxiliary CTC loss (0: no CTC head).")
    context_size: int = flag(2, "Stateless decoder context (tokens).")
    decoder_dim: int = flag(512, "Prediction network dim (the paper's LSTM: 640).")
    joiner_dim: int = flag(512, "Joiner dim.")
    decoder_type: str = flag("stateless", "Prediction network.", choices=("stateless", "lstm"))
    joiner_activation: str = flag("tanh", "Joiner activation.", choices=("tanh", "swish"))
    chunk_sizes: str = flag(
        "-1",
        "Dynamic chunk training: the encoder's attention chunk, drawn per update from this list "
        "(comma-separated, encoder steps or ms, e.g. '8,16,-1' or '320ms,640ms,-1'; -1 = full "
        "context). '-1' alone: offline. A positive size needs a streamable encoder "
        "(--conv-causal --input-norm global). Validation uses the first size.",
    )
    left_context_chunks: int = flag(
        -1, "Dynamic chunk training: chunks of left context each chunk attends (-1 = all)."
    )
    input_stats_cuts: int = flag(
        200,
        "--input-norm global: training cuts whose frames give the stored input statistics when "
        "the initial encoder has none.",
    )
    freeze_encoder_steps: int = flag(0, "Optimizer steps during which the encoder's lr is 0.")
    freeze_encoder_layers: int = flag(
        0,
        "Keep the feature encoder and the first N conformer blocks fixed for the whole run (no "
        "gradients, no Adam state: the memory a 0.6B encoder needs on one GPU).",
    )
    encoder_lr_scale: float = flag(1.0, "lr of the encoder = this x lr of the new layers.")
    spec_augment: bool = flag(True, "Lhotse SpecAugment on training features.")
    spec_augment_time_warp: int = flag(
        80, "SpecAugment: time warp of up to this many frames (0: none; icefall's 80 is for ~15 s)."
    )
    spec_augment_num_feature_masks: int = flag(2, "SpecAugment: mel-bin masks per utterance.")
    spec_augment_features_mask_size: int = flag(27, "SpecAugment: mel bins per mask, at most.")
    spec_augment_num_frame_masks: int = flag(
        10, "SpecAugment: time masks per utterance, at most (fewer on short utterances)."
    )
    spec_augment_frames_mask_size: int = flag(100, "SpecAugment: frames per time mask, at most.")
    spec_augment_max_frames_mask_fraction: float = flag(
        0.15, "SpecAugment: fraction of each utterance's frames that time masks cover, at most."
    )



def spec_augment_from_options(options: FinetuneOptions) -> SpecAugment | None:
    """The ``--spec-augment*`` options' SpecAugment (None with ``--no-spec-augment``); a bad
    value raises naming its option."""
    try:
        return create_spec_augment(
            options.spec_augment,
            time_warp_factor=options.spec_augment_time_warp,
            num_feature_masks=options.spec_augment_num_feature_masks,
            features_mask_size=options.spec_augment_features_mask_size,
            num_frame_masks=options.spec_augment_num_frame_masks,
            frames_mask_size=options.spec_augment_frames_mask_size,
            max_frames_mask_fraction=options.spec_augment_max_frames_mask_fraction,
        )
    except ValueError as e:
        name = str(e).split()[1]  # "SpecAugment <parameter> must be ..."
        name = "time_warp" if name == "time_warp_factor" else name
        raise ValueError(f"--spec-augment-{name.replace('_', '-')}: {e}") from None


def _init_checkpoint(options: FinetuneOptions) -> dict[str, Any] | None:
    if options.init_from.lower() == "none":
        return None
    return load_init_checkpoint(options.init_from)


STREAMING_CHANGES = {"conv_causal": (True,), "input_norm": ("global",)}
"""Encoder fields that fine-tuning may change from the initial checkpoint's, to these values
only: they make a full-context encoder streamable with the same weights (the stored input
statistics are then estimated on the training data)."""


def resolve_encoder_config(
    options: FinetuneOptions, overrides: dict[str, Any], init: dict[str, Any] | None
) -> W2VBertConfig:
    """Preset (or the checkpoint's config) + overrides; must match the checkpoint's encoder
    (but for :data:`STREAMING_CHANGES`)."""
    if init is None:
        if options.model_preset is None:
            raise ValueError("--init-from none trains from scratch and needs --model-preset.")
        config = get_w2vbert_config(options.model_preset)
    else:
        ckpt_config = W2VBertConfig(**init["params"]["model_config"])
        config = get_w2vbert_config(options.model_preset) if options.model_preset else ckpt_config
    config = dataclasses.replace(config, **overrides)
    config.validate()
    if init is not None:
        mismatched = encoder_config_mismatches(ckpt_config, config)
        streaming = [m for m in mismatched if getattr(config, m.split()[0]) in
                     STREAMING_CHANGES.get(m.split()[0], ())]  # fmt: skip
        for m in streaming:
            logger.warning(f"--init-from {options.init_from}: the encoder is made streamable: {m}")
        mismatched = [m for m in mismatched if m not in streaming]
        if mismatched:
            raise ValueError(
                f"--init-from {options.init_from} has another encoder configuration; "
                f"mismatched keys: {', '.join(mismatched)}."
            )
    return config


def freeze_encoder_layers(encoder: nn.Module, num_layers: int) -> int:
    """``requires_grad_(False)`` on the feature encoder and the first ``num_layers`` blocks
    (contrastive blocks first, then MLM blocks); returns the number of tensors frozen."""
    if num_layers <= 0:
        return 0
    blocks = list(encoder.contrastive.blocks) + list(encoder.mlm.blocks)
    if num_layers > len(blocks):
        raise ValueError(
            f"--freeze-encoder-layers must be <= the encoder's {len(blocks)} blocks, but is {num_layers}."
        )
    params = list(encoder.feature_encoder.parameters())
    for block in blocks[:num_layers]:
        params += list(block.parameters())
    for p in params:
        p.requires_grad_(False)
    return len(params)


def training_chunks(options: FinetuneOptions, config: W2VBertConfig) -> tuple[int, ...]:
    """The ``--chunk-sizes`` in encoder steps; raises naming the option for a bad value, and
    for a positive size with an encoder that cannot stream."""
    sizes = parse_chunk_sizes(options.chunk_sizes, 10 * config.frame_stride, option="--chunk-sizes")
    check_chunking(FULL_CONTEXT, options.left_context_chunks, left_option="--left-context-chunks")
    problems = streaming_problems(config)
    if any(size != FULL_CONTEXT for size in sizes) and problems:
        raise ValueError(
            f"--chunk-sizes {options.chunk_sizes} trains a streaming encoder, which needs: "
            + " ".join(problems) + " (fine-tuning may switch a checkpoint's encoder to "
            "--conv-causal --input-norm global)."
        )
    return sizes


def draw_chunk_size(sizes: tuple[int, ...], seed: int, step: int) -> int:
    """The chunk size of update ``step``: a function of ``(seed, step)`` only, so a resumed run
    draws what the uninterrupted one drew."""
    return random.Random(seed * 1_000_003 + step).choice(sizes)


def make_finetune_loss(
    options: FinetuneOptions,
    chunk_sizes: tuple[int, ...] = (FULL_CONTEXT,),
    left_chunks: int = FULL_CONTEXT,
    seed: int = 0,
):
    """The loss of a batch; with ``chunk_sizes`` other than full context, the encoder attends
    chunks of a size drawn per update in training (:func:`draw_chunk_size`), of the first size
    in validation."""

    def compute_loss(model: nn.Module, batch: dict, step: int):
        chunks = {}
        if chunk_sizes != (FULL_CONTEXT,):
            size = draw_chunk_size(chunk_sizes, seed, step) if model.training else chunk_sizes[0]
            chunks = {"chunk_size": size, "left_chunks": left_chunks}
        out = transducer_loss(
            model(batch["features"], batch["feature_lens"], batch["tokens"], **chunks),
            prune_range=options.prune_range,
            am_scale=options.am_scale,
            lm_scale=options.lm_scale,
        )
        simple_scale, pruned_scale = rnnt_loss_scales(
            step, options.model_warm_step, options.simple_loss_scale
        )
        loss = simple_scale * out.simple + pruned_scale * out.pruned
        if out.ctc is not None:
            loss = loss + options.ctc_loss_scale * out.ctc
        frames = max(int(out.num_frames), 1)
        metrics = {
            "loss": float(loss.detach()) / frames,
            "simple_loss": float(out.simple.detach()) / frames,
            "pruned_loss": float(out.pruned.detach()) / frames,
        }
        if out.ctc is not None:
            metrics["ctc_loss"] = float(out.ctc.detach()) / frames
        return loss / frames, metrics, frames

    return compute_loss


def estimate_input_statistics(
    encoder: nn.Module, data: DataConfig, fbank: str, max_cuts: int
) -> None:
    """Set the stored input statistics (``input_norm="global"``) from the frames of the first
    ``max_cuts`` training cuts (deterministic: a resumed run computes the same, and its
    checkpoint's values replace them anyway)."""
    if not data.train_cuts:
        raise ValueError("--input-norm global needs --train-cuts to estimate its statistics.")
    strategy = create_input_strategy(data.on_the_fly_feats, fbank)
    cuts = load_train_cuts(
        data.train_cuts, "--train-cuts", needs_features=not data.on_the_fly_feats
    )  # audio-only cuts (a Shar directory of recordings) with --on-the-fly-feats
    cuts = cuts.subset(first=max_cuts)
    total = total_sq = None
    count = 0
    for batch in SimpleCutSampler(cuts, max_cuts=16):
        features, feature_lens = strategy(batch)[:2]
        t, t2, n = frame_sums(features, feature_lens)
        total = t if total is None else total + t
        total_sq = t2 if total_sq is None else total_sq + t2
        count += n
    if total is None:
        raise ValueError("--train-cuts hold no cuts to estimate the input statistics from.")
    encoder.feature_encoder.input_stats.set_statistics(total, total_sq, count)
    logger.info(f"Input statistics (--input-norm global) from {count} frames of the training cuts")


def build_finetune_task(
    options: FinetuneOptions,
    overrides: dict[str, Any],
    data: DataConfig,
    device: torch.device,
    seed: int = 0,
) -> TaskSpec:
    init = _init_checkpoint(options)
    config = resolve_encoder_config(options, overrides, init)
    chunk_sizes = training_chunks(options, config)
    tokenizer = BpeTokenizer(options.bpe_model)
    blank_id = tokenizer.sp.piece_to_id("<blk>")
    if blank_id != 0:
        raise ValueError(
            f"{options.bpe_model}: '<blk>' must be token 0 (stage 3 makes it so), but is {blank_id}."
        )
    params: dict[str, Any] = {
        "kind": "finetune",
        "model_config": dataclasses.asdict(config),
        "vocab_size": tokenizer.vocab_size,
        "blank_id": 0,
        "context_size": options.context_size,
        "decoder_dim": options.decoder_dim,
        "joiner_dim": options.joiner_dim,
        "decoder_type": options.decoder_type,
        "joiner_activation": options.joiner_activation,
        "ctc": options.ctc_loss_scale > 0,
        "bpe_model": str(options.bpe_model),
        "subsampling_factor": config.frame_stride,
        "init_from": options.init_from,
        "finetune_options": config_to_dict(options),
        # what the model depends on, by content (w2vbert/checkpoint/identity.py)
        "inputs": {"tokenizer": input_record(tokenizer.digest(), str(options.bpe_model))},
    }
    if chunk_sizes != (FULL_CONTEXT,):  # what decoding checks its chunk size against
        params["streaming"] = {
            "chunk_sizes": list(chunk_sizes),
            "left_context_chunks": options.left_context_chunks,
        }
    model = build_transducer_from_params(params)
    stats_loaded = False
    if init is not None:
        key = "model_avg" if options.init_use_averaged_model else "model"
        if init.get(key) is None:
            raise ValueError(f"--init-from {options.init_from} has no {key!r}.")
        stats_loaded = any(k.startswith(INPUT_STATS) for k in init[key])
        load_encoder_weights(
            model.encoder, init[key], f"{options.init_from} ({key})", may_miss=(INPUT_STATS,)
        )
        params["inputs"]["init"] = input_record(
            state_dict_digest(init[key]), f"{options.init_from} ({key})"
        )
    if config.input_norm == "global" and not stats_loaded:
        estimate_input_statistics(model.encoder, data, config.fbank, options.input_stats_cuts)
    frozen = freeze_encoder_layers(model.encoder, options.freeze_encoder_layers)
    if frozen:
        logger.info(f"Frozen for the whole run: {frozen} encoder tensors (feature encoder + "
                    f"{options.freeze_encoder_layers} blocks)")  # fmt: skip
    model.to(device)
    encoder_params = list(model.encoder.parameters())
    enc_ids = {id(p) for p in encoder_params}
    groups = param_groups_with_scales(
        [
            ("encoder", encoder_params, options.encoder_lr_scale, options.freeze_encoder_steps),
            ("new", [p for p in model.parameters() if id(p) not in enc_ids], 1.0, 0),
        ]
    )

    def make_filter() -> CutFilter:  # also drops cuts with more tokens than encoder steps
        limits = data.cut_duration_limits()
        return encoder_cut_filter(
            config.frame_stride, **limits, tokenize=tokenizer, text_of=cut_text,
            frontend=config.frontend, fbank=config.fbank,
        )

    strategy = create_input_strategy(data.on_the_fly_feats, config.fbank)
    return TaskSpec(
        kind="finetune",
        model=model,
        compute_loss=make_finetune_loss(options, chunk_sizes, options.left_context_chunks, seed),
        param_groups=groups,
        train_dataset=AsrDataset(tokenizer, strategy, spec_augment_from_options(options)),
        valid_dataset=AsrDataset(tokenizer, strategy, None),
        make_cut_filter=make_filter,
        fbank=config.fbank,
        params=params,
    )


def run_finetuning(
    options: FinetuneOptions, overrides: dict[str, Any], data: DataConfig, train: TrainingConfig
) -> None:
    """One process of stage 5 (see :func:`w2vbert.training.runner.run_training`)."""
    run_training(
        lambda device: build_finetune_task(options, overrides, data, device, train.seed),
        train,
        data,
        extra_config={"finetune": config_to_dict(options), "encoder_overrides": overrides},
    )
