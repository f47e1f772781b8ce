"""BEST-RQ objective: cross-entropy of the random-projection codes at masked steps only.

Shapes: B masked steps (all utterances), G codebooks, V entries per codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from w2vbert.model.best_rq import BestRqOutput


@dataclass
class BestRqLoss:
    """Loss (tensor) and logging values (floats)."""

    aggregate: Tensor
    """() what is back-propagated: ``mlm``."""
    mlm: Tensor
    """() cross-entropy averaged over the B masked steps and the G codebooks."""
    mlm_acc: float
    """Fraction of (masked step, codebook) pairs whose code is predicted."""
    code_perplexity: float
    """Perplexity of the targets' codes in the batch (summed over codebooks)."""
    code_usage: float
    """Fraction of the G*V codes among the batch's targets."""
    num_masked: int
    """B, masked steps in the batch (the normaliser)."""


def best_rq_loss(output: BestRqOutput) -> BestRqLoss:
    """The BEST-RQ loss of one batch. Unmasked steps are not in ``output`` at all, so they can
    contribute nothing; a batch without masked steps gives 0 (with the graph kept)."""
    logits = output.mlm_logits.float()  # (B, G, V)
    num_masked, _, v = logits.shape
    labels = output.target_ids.reshape(-1)  # (B*G,)
    flat = logits.reshape(-1, v)  # (B*G, V)
    if num_masked > 0:
        mlm = F.cross_entropy(flat, labels)
        acc = float((flat.detach().argmax(dim=1) == labels).float().mean())
    else:
        mlm, acc = flat.sum() * 0.0, 0.0
    return BestRqLoss(
        aggregate=mlm,
        mlm=mlm,
        mlm_acc=acc,
        code_perplexity=float(output.code_perplexity),
        code_usage=float(output.code_usage),
        num_masked=int(num_masked),
    )
