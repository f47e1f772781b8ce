"""The pre-training task (stage 4): w2v-BERT model + loss on unlabelled cuts, run by the shared loop."""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from w2vbert.checkpoint.identity import input_record, state_dict_digest
from w2vbert.data.datasets import PretrainDataset, create_input_strategy
from w2vbert.data.filters import CutFilter, encoder_cut_filter
from w2vbert.data.sampling import DataConfig
from w2vbert.model.best_rq import BestRqModel
from w2vbert.model.config import (
    OBJECTIVES,
    W2VBertConfig,
    get_w2vbert_config,
    preset_names,
    with_objective,
)
from w2vbert.model.factory import (
    config_from_params,
    create_pretraining_model,
    encoder_config_mismatches,
    load_pretraining_weights,
)
from w2vbert.model.w2vbert import W2VBertModel
from w2vbert.objectives.best_rq_loss import best_rq_loss
from w2vbert.objectives.w2vbert_loss import w2vbert_loss
from w2vbert.training.config import TrainingConfig
from w2vbert.training.init_checkpoint import load_init_checkpoint
from w2vbert.training.optim import param_groups_with_scales
from w2vbert.training.runner import TaskSpec, run_training
from w2vbert.util.dataclass_args import (
    config_to_dict,
    flag,
)

logger = logging.getLogger(__name__)

LOSS_PARTS = ("contrastive", "mlm", "diversity")
LOGGED = (
    "contrastive_acc",
    "mlm_acc",
    "code_perplexity",
    "prob_perplexity",
    "code_usage",
    "temperature",
)
BEST_RQ_LOGGED = ("mlm", "mlm_acc", "code_perplexity", "code_usage")
"""What a BEST-RQ batch logs: its one loss, its accuracy and how the targets spread over the codes."""


@dataclass(frozen=True, kw_only=True)
class PretrainOptions:
    """Pre-training task settings besides the model config, the training loop and the data."""

    model_preset: str = flag("mini", "Model preset.", choices=tuple(preset_names()))
    objective: str = flag(
        "w2vbert",
        "w2vbert (contrastive + MLM), contrastive (w2v-Conformer), mlm (MLM only, "
        "the paper's collapsing ablation) or best-rq (BEST-RQ: MLM on the codes of a frozen "
        "random-projection quantizer; the paper's codebook and masking, see with_objective).",
        choices=OBJECTIVES,
    )
    mlm_only: bool = flag(False, "Shorthand for --objective mlm.")
    code_usage_warn: float = flag(
        0.05,
        "Warn when the mean code usage over 100 batches falls below this (w2v-BERT only: "
        "BEST-RQ's frozen codebook cannot collapse, and a batch holds fewer targets than its 8192 codes).",
    )
    min_encoder_steps: int = flag(4, "Drop cuts giving fewer encoder steps.")
    quantizer_lr_scale: float = flag(
        1.0,
        "Learning-rate factor of the quantizer (projection + codebook) relative to "
        "--base-lr: a slower quantizer keeps the targets of both losses from drifting.",
    )
    quantizer_frozen_steps: int = flag(
        0,
        "Keep the quantizer fixed (lr 0) for this many optimizer steps, so the "
        "context network first learns to predict its initial (random-projection) codes.",
    )
    init_from: str = flag(
        "",
        "Continue pre-training from this checkpoint: ours, a Hugging Face w2v-BERT 2.0 directory, "
        "hf:<hub id> or a fairseq(2) conformer_shaw.pt. The model config is the source's "
        "(--model-preset is ignored; model flags still override it); what the source lacks "
        "(a HF directory has no quantizer, projections or MLM head) starts fresh and is logged.",
    )
    gumbel_update_offset: int = flag(
        -1,
        "Updates added to the step for the Gumbel temperature. -1 (auto): when --init-from "
        "restores a quantizer, continue at the end of its schedule (the temperature floor) "
        "rather than at 2.0, which would make its trained codes noisy again (fairseq2's loader "
        "resets the count to 0); otherwise 0.",
    )
    freeze_feature_encoder_steps: int = flag(
        0, "Optimizer steps during which the feature encoder (front end) has lr 0 (-1: always)."
    )


def resolve_model_config(options: PretrainOptions, overrides: dict[str, Any]) -> W2VBertConfig:
    """Preset (or the ``--init-from`` source's config) -> objective -> explicit overrides (e.g.
    ``--mlm-weight 0``), validated; with ``--init-from`` the encoder must stay the source's."""
    if options.init_from:
        source = config_from_params(load_init_checkpoint(options.init_from)["params"])
        config = source
    else:
        config = get_w2vbert_config(options.model_preset)
    objective = "mlm" if options.mlm_only else options.objective
    config = with_objective(config, objective)  # type: ignore[arg-type]
    config = dataclasses.replace(config, **overrides)
    config.validate()
    if options.init_from:
        mismatched = encoder_config_mismatches(source, config)
        if mismatched:
            raise ValueError(
                f"--init-from {options.init_from} has another encoder configuration; "
                f"mismatched keys: {', '.join(mismatched)}."
            )
    return config


def gumbel_offset(options: PretrainOptions, config: W2VBertConfig, restored: bool) -> int:
    """The resolved ``--gumbel-update-offset``: with ``auto`` and a restored quantizer, the
    number of updates after which the schedule sits at its floor."""
    if options.gumbel_update_offset >= 0:
        return options.gumbel_update_offset
    if not restored or config.gumbel_temp_decay >= 1.0:
        return 0
    ratio = config.gumbel_min_temp / config.gumbel_max_temp
    return max(0, math.ceil(math.log(ratio) / math.log(config.gumbel_temp_decay)))


class CodeUsageMonitor:
    """Warns (at most every ``window`` updates) when the mean code usage drops below ``threshold``."""

    def __init__(self, threshold: float, window: int = 100) -> None:
        self.threshold, self.window = threshold, window
        self.values: collections.deque[float] = collections.deque(maxlen=window)
        self.last_warning = -window

    def update(self, usage: float, step: int) -> None:
        self.values.append(usage)
        if len(self.values) < self.window or step - self.last_warning < self.window:
            return
        mean = sum(self.values) / len(self.values)
        if mean < self.threshold:
            self.last_warning = step
            logger.warning(
                f"Codebook collapse? Mean code usage over the last {self.window} batches is {mean:.3f} "
                f"(< {self.threshold}) at update {step}: the quantizer uses few codes."
            )


def make_pretrain_loss(
    config: W2VBertConfig,
    monitor: CodeUsageMonitor | None,
    update_offset: int = 0,
):
    """``compute_loss(model, batch, step)`` for the shared loop (loss = mean over masked steps)."""
    loss_kwargs = config.loss_kwargs()

    def compute_loss(model: nn.Module, batch: dict, step: int):
        inner = model.module if hasattr(model, "module") else model
        # Gumbel temperature from the update count (+ the offset of a restored quantizer)
        inner.set_num_updates(step + update_offset)
        out = model(batch["features"], batch["feature_lens"])
        if config.method == "best-rq":
            loss = best_rq_loss(out)
            metrics = {"loss": float(loss.aggregate.detach())}
            metrics["mlm"] = float(loss.mlm.detach())
            metrics.update({k: float(getattr(loss, k)) for k in BEST_RQ_LOGGED if k != "mlm"})
        else:
            loss = w2vbert_loss(out, **loss_kwargs)
            metrics = {"loss": float(loss.aggregate.detach())}
            metrics.update({k: float(getattr(loss, k).detach()) for k in LOSS_PARTS})
            metrics.update({k: float(getattr(loss, k)) for k in LOGGED})
        if monitor is not None and inner.training:
            monitor.update(metrics["code_usage"], step)
        return loss.aggregate, metrics, max(int(loss.num_masked), 1)

    return compute_loss


def pretrain_param_groups(
    model: W2VBertModel | BestRqModel, options: PretrainOptions
) -> list[dict[str, Any]]:
    """Optimizer param groups: the quantizer (``--quantizer-lr-scale``,
    ``--quantizer-frozen-steps``; BEST-RQ's has no parameters), the feature encoder
    (``--freeze-feature-encoder-steps``) and everything else."""
    front = "encoder.feature_encoder."
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("quantizer.")]
    frozen = options.freeze_feature_encoder_steps
    groups = [("model", [p for n, p in named if not (frozen and n.startswith(front))], 1.0, 0)]
    if frozen:  # its own group only when asked (the optimizer state of older runs has two)
        frontend = [p for n, p in named if n.startswith(front)]
        if frozen < 0:
            for p in frontend:
                p.requires_grad_(False)
        groups.append(("feature_encoder", frontend, 1.0, max(frozen, 0)))
    groups.append(("quantizer", list(model.quantizer.parameters()), options.quantizer_lr_scale,
                   options.quantizer_frozen_steps))  # fmt: skip
    return param_groups_with_scales(groups)


def build_pretrain_task(
    options: PretrainOptions,
    model_config: W2VBertConfig,
    data: DataConfig,
    train: TrainingConfig,
    device: torch.device,
) -> TaskSpec:
    model = create_pretraining_model(model_config)
    restored_quantizer = False
    inputs: dict[str, Any] = {}
    if options.init_from:  # a resume then restores its own checkpoint over these weights
        init = load_init_checkpoint(options.init_from)
        fresh = load_pretraining_weights(model, init["model"], f"--init-from {options.init_from}")
        inputs["init"] = input_record(state_dict_digest(init["model"]), options.init_from)
        restored_quantizer = not any(k.startswith("quantizer.") for k in fresh)
    offset = gumbel_offset(options, model_config, restored_quantizer)
    if options.init_from and model_config.method == "w2vbert":
        logger.info(
            f"Gumbel temperature starts at update {offset} of its schedule "
            f"({'restored' if restored_quantizer else 'fresh'} quantizer)"
        )
    model = model.to(device)
    objective = "mlm" if options.mlm_only else options.objective
    if model_config.method == "best-rq":  # also when set by --method best-rq
        objective = "best-rq"
    monitor = None
    if model_config.method == "w2vbert":
        monitor = CodeUsageMonitor(options.code_usage_warn)

    def make_filter() -> CutFilter:
        limits = data.cut_duration_limits()
        return encoder_cut_filter(
            model_config.frame_stride, min_steps=options.min_encoder_steps, **limits,
            frontend=model_config.frontend, fbank=model_config.fbank,
        )

    fbank_device = device if device.type == "cuda" and data.num_workers == 0 else "cpu"
    strategy = create_input_strategy(data.on_the_fly_feats, model_config.fbank, fbank_device)
    return TaskSpec(
        kind="pretrain",
        model=model,
        compute_loss=make_pretrain_loss(model_config, monitor, offset),
        param_groups=pretrain_param_groups(model, options),
        train_dataset=PretrainDataset(strategy),
        valid_dataset=PretrainDataset(strategy),
        make_cut_filter=make_filter,
        fbank=model_config.fbank,
        params={
            "kind": "pretrain",
            "objective": objective,  # which objective made the checkpoint
            "init_from": options.init_from,
            "gumbel_update_offset": offset,
            "model_config": dataclasses.asdict(model_config),
            "pretrain_options": config_to_dict(options),
            "inputs": inputs,  # w2vbert/checkpoint/identity.py
        },
        # without the contrastive loss the Gumbel quantizer's codebooks get no gradient (BEST-RQ's
        # quantizer has no parameters)
        find_unused_parameters=model_config.method == "w2vbert"
        and model_config.contrastive_weight == 0.0,
    )


def run_pretraining(
    options: PretrainOptions, model_config: W2VBertConfig, data: DataConfig, train: TrainingConfig
) -> None:
    """One process of stage 4 (see :func:`w2vbert.training.runner.run_training`)."""
    run_training(
        lambda device: build_pretrain_task(options, model_config, data, train, device),
        train,
        data,
        extra_config={
            "pretrain": config_to_dict(options),
            "model": dataclasses.asdict(model_config),
        },
    )

