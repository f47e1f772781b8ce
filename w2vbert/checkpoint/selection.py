"""Which model a decode, export or average reads: icefall's ``--epoch --avg --use-averaged-model``,
or one file with ``--checkpoint``. Defined once; decode, export and average share the flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from w2vbert.checkpoint.averaging import averaged_model_from_epochs, averaging_suffix
from w2vbert.checkpoint.files import load_checkpoint
from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    dataclass_from_args,
    flag,
)


@dataclass(frozen=True, kw_only=True)
class CheckpointSelection:
    """A model of an experiment directory: the average of epochs, or a given file."""

    epoch: int = flag(30, "Use the model of epoch-<epoch>.pt (averaged with --avg).")
    avg: int = flag(1, "Number of epochs to average (icefall semantics).")
    use_averaged_model: bool = flag(
        True, "Average between epoch-(E-A).pt and epoch-E.pt from model_avg (needs E > A)."
    )
    checkpoint: Path | None = flag(
        None, "Use this checkpoint or averaged-model file instead of --epoch/--avg."
    )

    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, skip: tuple[str, ...] = (), **defaults: Any
    ) -> None:
        """The flags, in their own help group; ``skip`` leaves some out (e.g. ``checkpoint``)."""
        group = parser.add_argument_group("model to use (icefall's --epoch/--avg)")
        add_dataclass_arguments(group, cls, defaults, skip)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "CheckpointSelection":
        return dataclass_from_args(cls, args)

    @property
    def suffix(self) -> str:
        """icefall's file-name part: ``epoch-30-avg-9-use-averaged-model``, or the file's stem."""
        if self.checkpoint is not None:
            return Path(self.checkpoint).stem
        return averaging_suffix(self.epoch, self.avg, self.use_averaged_model)

    def load(self, exp_dir: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(state_dict, params)`` of the selected model (``params`` as saved in training)."""
        if self.checkpoint is not None:
            ckpt = load_checkpoint(self.checkpoint)
            for key in ("model", "params"):
                if key not in ckpt:
                    raise ValueError(
                        f"--checkpoint {self.checkpoint} has no {key!r}; it has {sorted(ckpt)}."
                    )
            return ckpt["model"], ckpt["params"]
        return averaged_model_from_epochs(exp_dir, self.epoch, self.avg, self.use_averaged_model)
