"""w2v-BERT objective: InfoNCE (contrastive) + codebook diversity + masked prediction (MLM).

``aggregate = contrastive_weight * L_w + diversity_weight * L_d + mlm_weight * L_m``; with the
defaults (1, 0.1, 1) this is the paper's ``beta * (L_w + alpha * L_d) + gamma * L_m``, alpha 0.1.
The diversity weight is separate so that it can be tuned or ablated on its own (the MLM-only
ablation sets both it and the contrastive weight to 0, the paper's beta = 0).

Shapes: N batch, B masked steps (all utterances), K distractors, C codevector dim,
G codebooks, V entries, P the largest number of masked steps of one utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from w2vbert.model.w2vbert import W2VBertOutput


@dataclass
class W2VBertLoss:
    """Loss parts (tensors) and logging values (floats)."""

    aggregate: Tensor
    """() the weighted sum that is back-propagated."""
    contrastive: Tensor
    """() L_w, InfoNCE averaged over masked steps (0 when not computed)."""
    diversity: Tensor
    """() L_d = (G*V - perplexity of the batch-averaged soft codes) / (G*V), in [0, 1)."""
    mlm: Tensor
    """() L_m, cross-entropy over code ids averaged over masked steps and target codebooks."""
    contrastive_acc: float
    """Fraction of masked steps whose positive has the highest logit."""
    mlm_acc: float
    """Fraction of (masked step, codebook) pairs whose code id is predicted."""
    code_perplexity: float
    """Perplexity of the hard codes in the batch (summed over codebooks)."""
    prob_perplexity: float
    """Perplexity of the batch-averaged soft codes (what the diversity loss uses)."""
    code_usage: float
    """Fraction of the G*V codes chosen in the batch."""
    temperature: float
    """Gumbel temperature of the quantizer."""
    num_masked: int
    """B, masked steps in the batch (the normaliser of the averaged losses)."""


@dataclass
class DistractorIndices:
    """Which masked steps serve as distractors, within each utterance."""

    seq_ids: Tensor
    """(B,) utterance of each masked step."""
    positions: Tensor
    """(B,) index of each masked step among its utterance's masked steps."""
    distractors: Tensor
    """(B, K) indices among the same utterance's masked steps, never equal to ``positions``."""
    valid: Tensor
    """(B,) bool, False where the utterance has a single masked step (it has no distractor)."""


def sample_distractors(
    num_masked: Tensor, num_distractors: int, generator: torch.Generator | None = None
) -> DistractorIndices:
    """Draw K distractors per masked step, uniformly from the other masked steps of its utterance.

    Always drawn with replacement (as wav2vec 2.0), so an utterance with fewer than K + 1
    masked steps repeats distractors. Vectorised over the batch.

    Args:
        num_masked: (N,) masked steps per utterance.
        num_distractors: K.
        generator: random generator on ``num_masked``'s device (global RNG if ``None``).
    """
    device = num_masked.device
    num_masked = num_masked.to(torch.int64)
    seq_ids = torch.repeat_interleave(torch.arange(num_masked.size(0), device=device), num_masked)
    offsets = torch.cumsum(num_masked, dim=0) - num_masked  # (N,) first masked step of each
    positions = torch.arange(seq_ids.size(0), device=device) - offsets[seq_ids]  # (B,)
    num_others = (num_masked[seq_ids] - 1).unsqueeze(1)  # (B, 1)
    draws = torch.rand((seq_ids.size(0), num_distractors), device=device, generator=generator)
    others = torch.minimum((draws * num_others).floor().to(torch.int64), num_others - 1)
    others = others.clamp(min=0)  # (B, K) index among the others
    distractors = others + (others >= positions.unsqueeze(1)).to(torch.int64)  # skip the positive
    valid = num_others.squeeze(1) > 0
    distractors = torch.where(valid.unsqueeze(1), distractors, positions.unsqueeze(1))
    return DistractorIndices(seq_ids, positions, distractors, valid)


def _per_utterance(values: Tensor, idx: DistractorIndices, max_masked: int) -> Tensor:
    """(B, ...) masked-step values -> (N, P, ...) zero-padded per utterance."""
    num_seqs = int(idx.seq_ids.max()) + 1 if idx.seq_ids.numel() > 0 else 0
    out = values.new_zeros((num_seqs, max_masked) + tuple(values.shape[1:]))
    return out.index_put((idx.seq_ids, idx.positions), values)


def contrastive_logits(
    context: Tensor,
    targets: Tensor,
    target_ids: Tensor,
    idx: DistractorIndices,
    logit_temp: float,
    block_same_code: bool = True,
) -> Tensor:
    """Cosine-similarity logits of the positive (column 0) and the K distractors.

    The distractors of an utterance with a single masked step get ``-inf``, and with
    ``block_same_code`` so does a distractor whose code ids equal the positive's (the same
    codevector).

    Args:
        context: (B, C) projected context vectors; targets: (B, C) quantized vectors;
        target_ids: (B, G) code ids of ``targets``.

    Returns:
        (B, 1 + K) logits divided by ``logit_temp``.
    """
    max_masked = int(idx.positions.max()) + 1
    ctx = F.normalize(context.float(), dim=-1, eps=1e-8)
    tgt = F.normalize(targets.float(), dim=-1, eps=1e-8)
    # Similarities of every masked step with every masked step of the same utterance:
    # (N, P, C) @ (N, C, P) -> (N, P, P), then the rows of the B masked steps: (B, P).
    ctx_pad = _per_utterance(ctx, idx, max_masked)
    tgt_pad = _per_utterance(tgt, idx, max_masked)
    sims = torch.bmm(ctx_pad, tgt_pad.transpose(1, 2))[idx.seq_ids, idx.positions]  # (B, P)
    candidates = torch.cat((idx.positions.unsqueeze(1), idx.distractors), dim=1)  # (B, 1 + K)
    logits = sims.gather(1, candidates) / logit_temp

    blocked = ~idx.valid.unsqueeze(1)  # (B, 1)
    if block_same_code:
        ids_pad = _per_utterance(target_ids, idx, max_masked)  # (N, P, G)
        distractor_ids = ids_pad[idx.seq_ids.unsqueeze(1), idx.distractors]  # (B, K, G)
        blocked = blocked | (distractor_ids == target_ids.unsqueeze(1)).all(dim=2)  # (B, K)
    blocked = blocked.expand(-1, idx.distractors.size(1))
    blocked = torch.cat((torch.zeros_like(blocked[:, :1]), blocked), dim=1)  # positive kept
    return logits.masked_fill(blocked, float("-inf"))


def w2vbert_loss(
    output: W2VBertOutput,
    *,
    contrastive_weight: float = 1.0,
    mlm_weight: float = 1.0,
    diversity_weight: float = 0.1,
    num_distractors: int = 100,
    logit_temp: float = 0.1,
    block_same_code: bool = True,
    generator: torch.Generator | None = None,
    distractors: DistractorIndices | None = None,
) -> W2VBertLoss:
    """Compute the w2v-BERT pre-training loss of one batch.

    Args:
        output: the model's output.
        contrastive_weight, mlm_weight, diversity_weight: weights of L_w, L_m and L_d.
        num_distractors: K; logit_temp: temperature of the cosine similarities.
        block_same_code: ``-inf`` for distractors with the positive's codes (wav2vec 2.0).
        generator: for the distractor draw (global RNG if ``None``).
        distractors: use these instead of drawing (tests).
    """
    targets = output.quantized_targets  # (B, C)
    zero = targets.new_zeros((), dtype=torch.float32)
    num_masked = int(targets.size(0))
    g, v = output.code_probs.shape

    diversity = (g * v - output.prob_perplexity) / (g * v)

    contrastive, contrastive_acc = zero, 0.0
    if contrastive_weight > 0.0:
        if output.projected_context is None:
            raise ValueError(
                "`contrastive_weight` must be 0 for a model without contrastive projection, "
                f"but is {contrastive_weight} instead."
            )
        if num_masked > 0:
            if distractors is None:
                distractors = sample_distractors(output.num_masked, num_distractors, generator)
            logits = contrastive_logits(
                output.projected_context,
                targets,
                output.target_ids,
                distractors,
                logit_temp,
                block_same_code,
            )
            labels = torch.zeros(num_masked, dtype=torch.int64, device=logits.device)
            contrastive = F.cross_entropy(logits, labels)
            contrastive_acc = float((logits.detach().argmax(dim=1) == 0).float().mean())

    mlm, mlm_acc = zero, 0.0
    if mlm_weight > 0.0:
        if output.mlm_logits is None:
            raise ValueError(
                f"`mlm_weight` must be 0 for a model without MLM head, but is {mlm_weight} instead."
            )
        if num_masked > 0:
            g_tgt = output.mlm_logits.size(1)  # the first G_tgt codebooks are the targets
            logits = output.mlm_logits.float().reshape(-1, v)  # (B, G_tgt, V) -> (B*G_tgt, V)
            labels = output.target_ids[:, :g_tgt].reshape(-1)  # (B*G_tgt,)
            mlm = F.cross_entropy(logits, labels)
            mlm_acc = float((logits.detach().argmax(dim=1) == labels).float().mean())

    aggregate = contrastive_weight * contrastive + diversity_weight * diversity + mlm_weight * mlm
    if contrastive_weight == 0.0:
        # Keep the codebooks in the graph (zero gradient) so DDP sees every parameter used.
        aggregate = aggregate + 0.0 * targets.float().sum()

    return W2VBertLoss(
        aggregate=aggregate,
        contrastive=contrastive,
        diversity=diversity,
        mlm=mlm,
        contrastive_acc=contrastive_acc,
        mlm_acc=mlm_acc,
        code_perplexity=float(output.code_perplexity.detach()),
        prob_perplexity=float(output.prob_perplexity.detach()),
        code_usage=float(output.code_usage.detach()),
        temperature=output.temperature,
        num_masked=num_masked,
    )
