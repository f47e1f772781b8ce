"""Shared plumbing of the data stage scripts in ``local/``: logging and error reporting."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"

# Errors whose message already says what is wrong and where: logged without a traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


def setup_cli_logging(log_file: Path, level: int = logging.INFO) -> None:
    """Logs to stderr and appends to ``log_file`` (its directory is created)."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(log_file, mode="a")):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger(__name__).info("Command: %s; log: %s", " ".join(sys.argv), log_file)


def run_main(main: Callable[[], None]) -> None:
    """Runs ``main``; a bad-input error is logged as one clear message and exits with status 1."""
    try:
        main()
    except _USER_ERRORS as e:
        logging.getLogger(__name__).error("%s: %s", type(e).__name__, e)
        sys.exit(1)
