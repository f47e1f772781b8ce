"""What the two training entry points (stage 4 ``w2vbert.pretrain``, stage 5 ``w2vbert.finetune``)
share: the training-loop and data flags, parsed and validated the same way."""

from __future__ import annotations

import argparse
from typing import Any

from w2vbert.data.sampling import DataConfig
from w2vbert.model.config import W2VBertConfig
from w2vbert.training.config import TrainingConfig
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    add_override_arguments,
    overrides_from_args,
)


def training_parser(
    prog: str, doc: str | None, **training_defaults: Any
) -> argparse.ArgumentParser:
    """A parser with the :class:`TrainingConfig` flags (``training_defaults`` per entry point) and
    the :class:`DataConfig` flags; the task adds its own group."""
    parser = entry_point_parser(prog, doc)
    TrainingConfig.add_arguments(parser, **training_defaults)
    DataConfig.add_arguments(parser)
    return parser


def parse_training_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, TrainingConfig, DataConfig]:
    """``(args, training config, data config)``; a missing ``--train-cuts`` is a usage error."""
    args = parser.parse_args(argv)
    train = TrainingConfig.from_args(args)
    data = DataConfig.from_args(args)
    if data.train_cuts is None:
        parser.error("--train-cuts is required")
    return args, train, data


def add_task_arguments(
    parser: argparse.ArgumentParser, options_cls: type, title: str, model_title: str
) -> None:
    """The task's own flags (fields of ``options_cls``) under ``title``, and one flag per
    :class:`W2VBertConfig` field under ``model_title`` that overrides the preset/checkpoint."""
    add_dataclass_arguments(parser.add_argument_group(title), options_cls)
    add_override_arguments(parser.add_argument_group(model_title), W2VBertConfig)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``{W2VBertConfig field: value}`` for the override flags that were given."""
    return overrides_from_args(W2VBertConfig, args)
