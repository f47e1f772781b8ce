"""The pre-training task (stage 4): w2v-BERT model + loss on unlabelled cuts, run by the shared loop."""

from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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
from w2vbert.model.factory import create_pretraining_model
from w2vbert.model.w2vbert import W2VBertModel
from w2vbert.objectives.best_rq_loss import best_rq_loss
from w2vbert.objectives.w2vbert_loss import w2vbert_loss
from w2vbert.training.config import TrainingConfig
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


def resolve_model_config(options: PretrainOptions, overrides: dict[str, Any]) -> W2VBertConfig:
    """Preset -> objective ablation -> explicit overrides (e.g. ``--mlm-weight 0``), validated."""
    config = get_w2vbert_config(options.model_preset)
    objective = "mlm" if options.mlm_only else options.objective
    config = with_objective(config, objective)  # type: ignore[arg-type]
    config = dataclasses.replace(config, **overrides)
    config.validate()
    return config


class CodeUsageMonitor:
    """Warns (at most every ``window`` batches) when the mean code usage drops below ``threshold``."""

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
                f"(< {self.threshold}) at batch {step}: the quantizer uses few codes."
            )


def make_pretrain_loss(config: W2VBertConfig, accum_grad: int, monitor: CodeUsageMonitor | None):
    """``compute_loss(model, batch, step)`` for the shared loop (loss = mean over masked steps)."""
    loss_kwargs = config.loss_kwargs()

    def compute_loss(model: nn.Module, batch: dict, step: int):
        inner = model.module if hasattr(model, "module") else model
        inner.set_num_updates(step // accum_grad)  # Gumbel temperature from the optimizer step
        out = model(batch["features"], batch["feature_lens"])
        if config.method == "best-rq":
            loss = best_rq_loss(out)
            metrics = {"loss": float(loss.aggregate.detach())}
            metrics.update({k: float(getattr(loss, k)) for k in BEST_RQ_LOGGED})
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
    """Two optimizer param groups: the quantizer (``--quantizer-lr-scale``,
    ``--quantizer-frozen-steps``) and everything else (BEST-RQ's quantizer has no parameters:
    one group)."""
    rest = (p for name, p in model.named_parameters() if not name.startswith("quantizer."))
    return param_groups_with_scales(
        [
            ("model", rest, 1.0, 0),
            ("quantizer", model.quantizer.parameters(), options.quantizer_lr_scale,
             options.quantizer_frozen_steps),
        ]
    )  # fmt: skip


def build_pretrain_task(
    options: PretrainOptions,
    model_config: W2VBertConfig,
    data: DataConfig,
    train: TrainingConfig,
    device: torch.device,
) -> TaskSpec:
    model = create_pretraining_model(model_config).to(device)
    objective = "mlm" if options.mlm_only else options.objective
    if model_config.method == "best-rq":  # also when set by --method best-rq
        objective = "best-rq"
    monitor = None
    if model_config.method == "w2vbert":
        monitor = CodeUsageMonitor(options.code_usage_warn)

    def make_filter() -> CutFilter:
        limits = data.cut_duration_limits()
        return encoder_cut_filter(
            model_config.frame_stride, min_steps=options.min_encoder_steps, **limits
        )

    strategy = create_input_strategy(data.on_the_fly_feats)
    return TaskSpec(
        kind="pretrain",
        model=model,
        compute_loss=make_pretrain_loss(model_config, train.accum_grad, monitor),
        param_groups=pretrain_param_groups(model, options),
        train_dataset=PretrainDataset(strategy),
        valid_dataset=PretrainDataset(strategy),
        make_cut_filter=make_filter,
        params={
            "kind": "pretrain",
            "objective": objective,  # which objective made the checkpoint
            "model_config": dataclasses.asdict(model_config),
            "pretrain_options": config_to_dict(options),
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

