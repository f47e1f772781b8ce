"""Writes `<exp-dir>/RESULTS.md` and `<exp-dir>/plots/*.png` from a run's outputs.

    python -m w2vbert.report --exp-dir exp --dev-sets dev-mini --test-sets test-mini
"""

from __future__ import annotations

import logging
from pathlib import Path

from w2vbert.reporting.results import write_results
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.log import setup_logging


def main() -> None:
    parser = entry_point_parser("w2vbert.report", __doc__)
    parser.add_argument("--exp-dir", type=Path, default=Path("exp"), help="the run's exp dir")
    parser.add_argument("--dev-sets", nargs="*", default=[], help="dev set names (columns)")
    parser.add_argument("--test-sets", nargs="*", default=[], help="test set names (columns)")
    parser.add_argument("--title", default="w2v-BERT recipe: results", help="first heading")
    parser.add_argument("--command", default="./run.sh", help="the command shown in the file")
    args = parser.parse_args()
    setup_logging(None)
    if not args.exp_dir.is_dir():
        parser.error(f"--exp-dir {args.exp_dir} does not exist")
    out = write_results(args.exp_dir, title=args.title, command=args.command,
                        dev_sets=args.dev_sets, test_sets=args.test_sets)
    logging.info("Wrote %s", out)


if __name__ == "__main__":
    main()
