"""Write an averaged model (icefall's --epoch --avg --use-averaged-model) as a standalone file.

    python -m w2vbert.average --exp-dir exp/finetune --epoch 30 --avg 9 --use-averaged-model \\
        --output exp/finetune/averaged-epoch-30-avg-9.pt

The file holds ``model`` (state dict) and ``params`` like a checkpoint, so decode (--checkpoint),
export and finetune (--init-from) load it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from w2vbert.checkpoint import CheckpointSelection, atomic_torch_save
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = entry_point_parser("w2vbert.average", __doc__)
    parser.add_argument(
        "--exp-dir", type=Path, required=True, help="Directory with epoch-N.pt files."
    )
    CheckpointSelection.add_arguments(parser, skip=("checkpoint",), epoch=None)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Output file (default: <exp-dir>/averaged-<suffix>.pt).",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.epoch is None:
        parser.error("--epoch is required (the last epoch of the average)")
    selection = CheckpointSelection.from_args(args)
    setup_logging(None)
    suffix = selection.suffix
    try:
        state, params = selection.load(args.exp_dir)
    except (ValueError, FileNotFoundError) as e:
        logging.getLogger(__name__).error(str(e))
        raise SystemExit(1) from e
    output = args.output or args.exp_dir / f"averaged-{suffix}.pt"
    atomic_torch_save({"model": state, "params": {**params, "averaged": suffix}}, output)
    print(output)


if __name__ == "__main__":
    main()
