"""Stopping training on a signal: which signals, and the exception that carries the exit code."""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingInterrupted(RuntimeError):
    """Raised after a stop signal (SIGTERM, SIGINT, SIGUSR1) once a checkpoint is written.

    ``exit_code`` is the shell's convention, 128 + the signal number (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int, checkpoint: Path) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(
            f"Stopped by {signal.Signals(signum).name}; saved {checkpoint}. "
            "Re-run the same command to resume from it."
        )


# SIGTERM: what SLURM and Kubernetes send before killing; SIGINT: Ctrl-C; SIGUSR1: SLURM's --signal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
