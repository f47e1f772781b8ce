"""Suite-wide fixtures: one torch thread (the suite runs on small shared CPUs) and seeded RNGs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture()
def deterministic_rng() -> None:
    """Seeds python, numpy and torch (lhotse's fixture of the same name does the same)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
