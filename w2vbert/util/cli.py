"""The argument parser every ``python -m w2vbert.X`` entry point starts from."""

from __future__ import annotations

import argparse


def entry_point_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for ``python -m <prog>`` whose help is the module docstring ``doc``."""
    return argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
