"""Dropout with a cheaper mask on CPU than ``F.dropout``.

``F.dropout`` draws its mask with ``bernoulli_``, which on CPU costs several times a uniform draw;
here the mask is ``rand >= p``, already scaled by ``1 / (1 - p)``, and multiplied in once (the
same distribution: each element is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``).
Measured on (4, 250, 256), one thread: forward + backward 1.23 -> 0.78 ms. CPU only: other
devices use ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout of ``x`` (any shape); identity when not training or ``p == 0``."""
    if not training or p == 0.0:
        return x
    if not 0.0 < p < 1.0 or x.device.type != "cpu":
        # p == 1 and invalid p: torch's handling. Off CPU F.dropout is a fused kernel that saves
        # a 1-byte mask; the float mask here would cost 4 bytes per element of activation memory.
        return F.dropout(x, p, training)
    scale = (torch.rand_like(x) >= p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * scale


class Dropout(nn.Module):
    """:func:`dropout` as a module (a drop-in for ``nn.Dropout``; same state dict: none)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`p` must be in [0, 1], but is {p} instead.")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
