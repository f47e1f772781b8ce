"""RNG states saved in training checkpoints: python, numpy, torch (CPU, CUDA) and module generators;
and seeding them all."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int, generators: dict[str, torch.Generator] | None = None) -> None:
    """Seed python, numpy and torch with ``seed``, and ``generators`` with ``seed + 1, + 2, ...``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for i, generator in enumerate((generators or {}).values()):
        generator.manual_seed(seed + 1 + i)


def find_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute of a submodule, by ``<module path>.<attr>``."""
    found: dict[str, torch.Generator] = {}
    for mod_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                found[f"{mod_name}.{attr}" if mod_name else attr] = value
    return found


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The python, numpy, torch (CPU and CUDA) RNG states and those of ``generators``."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(
    state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng_state`; a generator missing from ``state`` raises ``KeyError``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(
                f"Checkpoint has no RNG state for generator {name!r}; it has {list(state['generators'])}."
            )
        gen.set_state(state["generators"][name])
