"""The one logging set-up of every entry point, and the error reporting of stage scripts.

Only entry points call :func:`setup_logging`; library modules use ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import datetime
import logging
import signal
import sys
from pathlib import Path
from typing import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"
_RANK_FORMAT = (
    "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] ({rank}/{world_size}) %(message)s"
)

from w2vbert.util.lock import DirectoryInUseError

# Errors whose message already says what is wrong and where: logged without a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    DirectoryInUseError,
)


def setup_logging(
    log_dir: Path | str | None = None,
    prefix: str = "log-train",
    rank: int = 0,
    world_size: int = 1,
    level: int = logging.INFO,
    *,
    log_file: Path | str | None = None,
) -> Path | None:
    """Log to stderr and to a file; returns the file's path (None: stderr only).

    The file is ``log_file`` (appended to) when given, else ``<log_dir>/<prefix>-<time>[-<rank>]``
    (icefall's ``log/log-train-<time>``), else none. Handlers of an earlier call are replaced;
    handlers that others added are left alone. Lines carry ``(rank/world_size)`` unless ``log_file``.
    """
    # entry points' logs carry "(rank/world size)"; the stage scripts' (log_file) do not
    fmt = logging.Formatter(
        LOG_FORMAT
        if log_file is not None
        else _RANK_FORMAT.format(rank=rank, world_size=world_size)
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_w2vbert", False):  # ours from an earlier call
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    path: Path | None = None
    if log_file is not None:
        path = Path(log_file)
        mode = "a"
    elif log_dir is not None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        path = Path(log_dir) / (f"{prefix}-{stamp}" + (f"-{rank}" if world_size > 1 else ""))
        mode = "w"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode=mode))
    for h in handlers:
        h.setFormatter(fmt)
        h._w2vbert = True  # type: ignore[attr-defined]
        root.addHandler(h)
    return path


def setup_cli_logging(log_file: Path | str, level: int = logging.INFO) -> None:
    """Stage scripts of ``local/``: log to stderr and append to ``log_file`` only (every other
    root handler is removed); logs the command."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    setup_logging(log_file=log_file, level=level)
    logging.getLogger(__name__).info("Command: %s; log: %s", " ".join(sys.argv), log_file)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: temp files removed, locks released, pools shut down


def run_main(main: Callable[[], None]) -> None:
    """Runs ``main``; a bad-input error is logged as one clear message and exits with status 1.

    SIGTERM and Ctrl-C stop it cleanly (clean-ups run; no finished output is touched) with one
    log line and the exit status 143 / 130.
    """
    log = logging.getLogger(__name__)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        main()
    except USER_ERRORS as e:
        log.error("%s: %s", type(e).__name__, e)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("Interrupted (Ctrl-C); finished outputs are kept, a re-run redoes the rest")
        sys.exit(130)
    except SystemExit as e:
        if isinstance(e.code, int) and e.code > 128:
            log.error(
                f"Stopped by {signal.Signals(e.code - 128).name}; finished outputs are kept, "
                "a re-run redoes the rest"
            )
        raise
