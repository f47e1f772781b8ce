"""Stage 5: pruned RNN-T fine-tuning of a (pre-trained) w2v-BERT encoder on labelled Lhotse cuts.

    python -m w2vbert.finetune --init-from exp/pretrain/epoch-10.pt \\
        --bpe-model data/lang_bpe_500/bpe.model \\
        --train-cuts data/fbank/librispeech_cuts_train-clean-100.jsonl.gz \\
        --valid-cuts data/fbank/librispeech_cuts_dev-clean.jsonl.gz --exp-dir exp/finetune

Several ``--train-cuts`` files (e.g. the three LibriSpeech 960 h parts) are one training set,
interleaved at random in proportion to their sizes (``w2vbert.data.sampling.load_train_cuts``).
``--init-from none --model-preset mini`` trains the same model from scratch (the baseline).
Re-running the same command resumes from the newest complete checkpoint in --exp-dir.
Checkpoints carry what decoding and export need (vocab_size, context_size, dims, model config).
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
from w2vbert.training.init_checkpoint import init_source_exists
from w2vbert.training.finetuning import (
    FinetuneOptions,
    run_finetuning,
    spec_augment_from_options,
)
from w2vbert.util.dataclass_args import dataclass_from_args


def get_parser() -> argparse.ArgumentParser:
    parser = training_parser(
        "w2vbert.finetune",
        __doc__,
        exp_dir=Path("exp/finetune"),
        base_lr=1e-3,
        warmup_steps=5000,
        num_epochs=30,
    )
    add_task_arguments(
        parser, FinetuneOptions, "fine-tuning", "encoder (override the preset/checkpoint)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args, train, data = parse_training_args(parser, argv)
    options = dataclass_from_args(FinetuneOptions, args)
    if options.init_from.lower() == "none" and options.model_preset is None:
        parser.error("--init-from none (training from scratch) needs --model-preset")
    if options.init_from.lower() != "none" and not init_source_exists(options.init_from):
        parser.error(f"--init-from {options.init_from} does not exist")
    try:
        spec_augment_from_options(options)
    except ValueError as e:
        parser.error(str(e))
    overrides = model_overrides(args)
    launch(run_finetuning, (options, overrides, data, train), train.world_size, train.master_port)


if __name__ == "__main__":
    main()
