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

from w2vbert.training.averaging import averaged_model_from_epochs, averaging_suffix
from w2vbert.training.checkpoint import atomic_torch_save
from w2vbert.training.logging_utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m w2vbert.average",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exp-dir", type=Path, required=True, help="Directory with epoch-N.pt files."
    )
    parser.add_argument("--epoch", type=int, required=True, help="Last epoch of the average.")
    parser.add_argument("--avg", type=int, default=1, help="Number of epochs averaged.")
    parser.add_argument(
        "--use-averaged-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Use model_avg of epoch-(E-A).pt and epoch-E.pt (needs E > A).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Output file (default: <exp-dir>/averaged-<suffix>.pt).",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(None)
    suffix = averaging_suffix(args.epoch, args.avg, args.use_averaged_model)
    try:
        state, params = averaged_model_from_epochs(
            args.exp_dir, args.epoch, args.avg, args.use_averaged_model
        )
    except (ValueError, FileNotFoundError) as e:
        logging.getLogger(__name__).error(str(e))
        raise SystemExit(1) from e
    output = args.output or args.exp_dir / f"averaged-{suffix}.pt"
    atomic_torch_save({"model": state, "params": {**params, "averaged": suffix}}, output)
    print(output)


if __name__ == "__main__":
    main()
