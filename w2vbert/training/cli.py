"""What the two training entry points (stage 4 ``w2vbert.pretrain``, stage 5 ``w2vbert.finetune``)
share: the training-loop and data flags, parsed and validated the same way."""

from __future__ import annotations

import argparse
from typing import Any

from w2vbert.data.sampling import DataConfig
from w2vbert.training.config import TrainingConfig
from w2vbert.util.cli import entry_point_parser


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
