"""Gumbel-softmax vector quantizer (wav2vec 2.0 style) giving w2v-BERT's targets.

Shapes: G codebooks (groups), V entries per codebook, C codevector dim (C/G per group),
M input dim, ``*`` any leading shape (e.g. (N, S) or the (B,) masked steps of a batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """What :class:`GumbelVectorQuantizer` returns."""

    quantized: Tensor
    """(*, C) codevectors; straight-through (gradient of the soft Gumbel codes) in training."""
    code_ids: Tensor
    """(*, G) int64 chosen entry per codebook (discrete, no gradient)."""
    code_probs: Tensor
    """(G, V) softmax of the logits (no noise, no temperature) averaged over the counted steps;
    differentiable, for the diversity loss."""
    prob_perplexity: Tensor
    """() sum over codebooks of exp(entropy of ``code_probs``), in [G, G*V]; differentiable."""
    code_perplexity: Tensor
    """() the same from the hard code histogram (logging)."""
    code_usage: Tensor
    """() fraction of the G*V entries chosen at least once (logging)."""
    temperature: float
    """Gumbel temperature used."""


def gumbel_temperature(num_updates: int, max_temp: float, min_temp: float, decay: float) -> float:
    """``max(min_temp, max_temp * decay ** num_updates)``."""
    return max(min_temp, max_temp * decay**num_updates)


class GumbelVectorQuantizer(nn.Module):
    """Linear(M, G*V) logits -> Gumbel-softmax (hard, straight-through) or argmax -> codevectors.

    The temperature is annealed per optimiser step: the training loop calls
    ``quantizer.set_num_updates(step)`` (``W2VBertModel.set_num_updates`` forwards it) before each
    forward; it is a plain attribute recomputed from the step, so nothing extra is checkpointed.
    """

    def __init__(
        self,
        *,
        input_dim: int,
        num_codebooks: int,
        num_entries: int,
        codebook_dim: int,
        max_temp: float = 2.0,
        min_temp: float = 0.5,
        temp_decay: float = 0.999995,
    ) -> None:
        super().__init__()
        if codebook_dim % num_codebooks != 0:
            raise ValueError(
                f"`codebook_dim` ({codebook_dim}) must be a multiple of `num_codebooks` "
                f"({num_codebooks}), but is not."
            )
        self.num_codebooks = num_codebooks
        self.num_entries = num_entries
        self.codebook_dim = codebook_dim
        self.max_temp = max_temp
        self.min_temp = min_temp
        self.temp_decay = temp_decay
        self.temperature = max_temp
        self.weight_proj = nn.Linear(input_dim, num_codebooks * num_entries)
        # (G, V, C/G) entries; initialised as wav2vec 2.0 (uniform, projection N(0, 1)).
        self.codebooks = nn.Parameter(
            torch.empty(num_codebooks, num_entries, codebook_dim // num_codebooks)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.codebooks)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the Gumbel temperature to ``max(min, max * decay ** num_updates)``."""
        self.temperature = gumbel_temperature(
            num_updates, self.max_temp, self.min_temp, self.temp_decay
        )

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize.

        Args:
            x: (*, M) features (w2v-BERT: the unmasked feature-encoder output).
            padding_mask: (*) bool, ``True`` = padding, excluded from the statistics; ``None``
                counts every step.
        """
        g, v = self.num_codebooks, self.num_entries
        lead = x.shape[:-1]
        logits = self.weight_proj(x).reshape(-1, g, v).float()  # (*, G*V) -> (B, G, V)
        if padding_mask is None:
            weights = None
            count = max(logits.size(0), 1)
        else:
            weights = (~padding_mask).reshape(-1, 1, 1).to(logits.dtype)  # (B, 1, 1)
            count = weights.sum().clamp(min=1.0)

        probs = logits.softmax(dim=-1)  # (B, G, V)
        code_probs = (probs if weights is None else probs * weights).sum(dim=0) / count  # (G, V)

        if self.training:
            uniform = torch.rand_like(logits).clamp_(min=1e-10, max=1.0 - 1e-7)
            noisy = (logits - torch.log(-torch.log(uniform))) / self.temperature
            soft = noisy.softmax(dim=-1)  # (B, G, V)
            code_ids = soft.argmax(dim=-1)  # (B, G)
            hard = F.one_hot(code_ids, v).to(soft.dtype)
            codes = hard - soft.detach() + soft  # straight-through: value hard, gradient soft
            codes = codes.to(self.codebooks.dtype)
            # (G, B, V) @ (G, V, C/G) -> (G, B, C/G) -> (B, G, C/G)
            quantized = torch.bmm(codes.transpose(0, 1), self.codebooks).transpose(0, 1)
        else:
            code_ids = logits.argmax(dim=-1)  # (B, G)
            hard = F.one_hot(code_ids, v).to(logits.dtype)
            groups = torch.arange(g, device=x.device)
            quantized = self.codebooks[groups, code_ids]  # (B, G, C/G)

        with torch.no_grad():
            hard_counts = hard if weights is None else hard * weights
            hard_probs = hard_counts.sum(dim=0) / count  # (G, V)
            code_perplexity = _perplexity(hard_probs)
            code_usage = (hard_counts.sum(dim=0) > 0).float().mean()

        return QuantizerOutput(
            quantized=quantized.reshape(*lead, self.codebook_dim),
            code_ids=code_ids.reshape(*lead, g),
            code_probs=code_probs,
            prob_perplexity=_perplexity(code_probs),
            code_perplexity=code_perplexity,
            code_usage=code_usage,
            temperature=self.temperature,
        )

    def extra_repr(self) -> str:
        return (
            f"G={self.num_codebooks}, V={self.num_entries}, C={self.codebook_dim}, "
            f"temp={self.max_temp}->{self.min_temp} x{self.temp_decay}/step"
        )


def _perplexity(probs: Tensor) -> Tensor:
    """Sum over codebooks of exp(entropy): (G, V) -> ()."""
    entropy = -(probs * torch.log(probs + 1e-7)).sum(dim=-1)  # (G,)
    return entropy.exp().sum()
