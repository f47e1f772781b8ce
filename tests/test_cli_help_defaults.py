"""--help shows the default of every --x/--no-x flag (argparse 3.11+ shows none by itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_decode_help_says_that_the_averaged_model_is_used_by_default():
    out = subprocess.run([sys.executable, "-m", "w2vbert.decode", "--help"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps the help lines
    assert "needs E > A). (default: --use-averaged-model)" in text


def test_help_shows_each_boolean_default_as_the_flag_that_gives_it():
    import argparse
    import dataclasses

    from w2vbert.util.dataclass_args import add_dataclass_arguments

    @dataclasses.dataclass(frozen=True)
    class Options:
        fast: bool = dataclasses.field(default=False, metadata={"help": "Go fast."})
        safe: bool = dataclasses.field(default=True, metadata={"help": "Stay safe."})

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Options)
    text = parser.format_help()
    assert "Go fast. (default: --no-fast)" in text and "Stay safe. (default: --safe)" in text
    assert parser.parse_args([]).fast is False and parser.parse_args(["--fast"]).fast is True
