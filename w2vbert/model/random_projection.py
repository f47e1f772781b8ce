"""BEST-RQ's random-projection quantizer (Chiu et al. 2022, section 3.1): frozen targets.

``code = argmin_i || normalize(c_i) - normalize(A x) ||`` per codebook, with ``A`` a Xavier-uniform
random projection and ``c_i`` standard-normal random entries; for unit vectors the nearest entry
in L2 is the one of highest cosine, so the code is ``argmax_i <normalize(c_i), normalize(A x)>``.
Nothing here is learned: the projection and the codebooks are buffers drawn from a seed, saved
with every checkpoint (so a resume or a fine-tuning start loads them rather than drawing again).

Shapes: G codebooks, V entries per codebook, D code dim, I input dim (stacked fbank,
``frame_stride * num_mel_bins``), ``*`` any leading shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class RandomProjectionOutput:
    """What :class:`RandomProjectionQuantizer` returns."""

    code_ids: Tensor
    """(*, G) int64 nearest entry per codebook."""
    code_perplexity: Tensor
    """() sum over codebooks of exp(entropy of the code histogram) (logging)."""
    code_usage: Tensor
    """() fraction of the G*V entries chosen at least once (logging)."""


class RandomProjectionQuantizer(nn.Module):
    """Frozen random projection + frozen L2-normalised random codebook -> code ids.

    Args:
        input_dim: I, the stacked normalised fbank per encoder step.
        num_codebooks: G, each with its own projection and codebook.
        num_entries: V.
        code_dim: D.
        seed: the projection and the codebooks are a function of it (CPU generator).
    """

    def __init__(
        self, *, input_dim: int, num_codebooks: int, num_entries: int, code_dim: int, seed: int
    ) -> None:
        super().__init__()
        self.num_codebooks = num_codebooks
        self.num_entries = num_entries
        self.code_dim = code_dim
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        projection = torch.empty(num_codebooks, input_dim, code_dim)
        for g in range(num_codebooks):  # Xavier per (I, D) matrix: bound sqrt(6 / (I + D))
            nn.init.xavier_uniform_(projection[g], generator=generator)
        codebooks = torch.randn(num_codebooks, num_entries, code_dim, generator=generator)
        self.register_buffer("projection", projection)  # (G, I, D)
        self.register_buffer("codebooks", F.normalize(codebooks, dim=-1))  # (G, V, D), unit rows

    @torch.no_grad()
    def forward(self, x: Tensor) -> RandomProjectionOutput:
        """Quantize.

        Args:
            x: (*, I) stacked normalised fbank (BEST-RQ: the clean frames at the masked steps).
        """
        g, v = self.num_codebooks, self.num_entries
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.size(-1)).float()  # (B, I)
        projected = torch.einsum("bi,gid->gbd", flat, self.projection.float())  # (G, B, D)
        projected = F.normalize(projected, dim=-1)
        sims = torch.bmm(projected, self.codebooks.float().transpose(1, 2))  # (G, B, V)
        code_ids = sims.argmax(dim=-1).transpose(0, 1)  # (B, G)

        counts = torch.zeros(g, v, device=x.device)
        counts.scatter_add_(1, code_ids.t(), torch.ones_like(code_ids.t(), dtype=counts.dtype))
        probs = counts / max(code_ids.size(0), 1)
        entropy = -(probs * torch.log(probs + 1e-7)).sum(dim=-1)  # (G,)
        return RandomProjectionOutput(
            code_ids=code_ids.reshape(*lead, g),
            code_perplexity=entropy.exp().sum(),
            code_usage=(counts > 0).float().mean(),
        )

    def extra_repr(self) -> str:
        return f"G={self.num_codebooks}, V={self.num_entries}, D={self.code_dim}, seed={self.seed}"
