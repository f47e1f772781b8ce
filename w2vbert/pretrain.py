"""Stage 4: w2v-BERT pre-training on unlabelled Lhotse cuts.

    python -m w2vbert.pretrain --train-cuts data/fbank/librispeech_cuts_train-clean-100.jsonl.gz \\
        --valid-cuts data/fbank/librispeech_cuts_dev-clean.jsonl.gz --model-preset mini \\
        --exp-dir exp/pretrain --num-epochs 10 --max-duration 200 [--world-size 2]

Re-running the same command resumes from the newest complete checkpoint in --exp-dir.
Writes --exp-dir/{epoch-N.pt, checkpoint-<batch>.pt, log/log-train-*, tensorboard/, metrics.jsonl,
config.json}. Model flags (``--model-dim``, ``--mlm-weight``, ``--frame-stride``, ...) override the preset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from w2vbert.training.cli import (
    add_task_arguments,
    model_overrides,
    parse_training_args,
    training_parser,
)
from w2vbert.training.ddp import launch
from w2vbert.training.pretraining import (
    PretrainOptions,
    resolve_model_config,
    run_pretraining,
)
from w2vbert.util.dataclass_args import dataclass_from_args


def get_parser() -> argparse.ArgumentParser:
    parser = training_parser(
        "w2vbert.pretrain", __doc__, exp_dir=Path("exp/pretrain"), base_lr=2e-3, warmup_steps=25000
    )
    add_task_arguments(parser, PretrainOptions, "pre-training", "model (override the preset)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args, train, data = parse_training_args(parser, argv)
    options = dataclass_from_args(PretrainOptions, args)
    model_config = resolve_model_config(options, model_overrides(args))
    launch(
        run_pretraining, (options, model_config, data, train), train.world_size, train.master_port
    )


if __name__ == "__main__":
    main()
