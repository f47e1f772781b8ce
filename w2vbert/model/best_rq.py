"""BestRqModel: BEST-RQ pre-training (Chiu et al. 2022) of the same encoder as w2v-BERT.

Shapes: N batch, T fbank frames, F mel bins, S encoder steps, M model dim, B masked steps in
the batch, G codebooks, V entries per codebook.

Forward: normalise the fbank (the feature encoder's own input normalisation) -> span mask over
encoder steps -> targets: the random-projection quantizer's codes of the *clean* stacked frames at
masked steps -> the fbank frames of masked steps replaced by noise N(0, ``noise_std``) -> the whole
encoder (feature encoder, then every block; BEST-RQ has no contrastive module) -> one linear
softmax head per codebook at masked steps. The loss is
:func:`w2vbert.objectives.best_rq_loss.best_rq_loss`. ``.encoder`` is the
:class:`W2VBertEncoder` that fine-tuning loads, as after w2v-BERT.

The mask is drawn per encoder step (``frame_stride`` fbank frames), so a masked step hides exactly
the frames its target stacks; the paper's per-frame rate is converted by
:func:`w2vbert.model.config.with_objective`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from w2vbert.model.config import W2VBertConfig
from w2vbert.model.masking import compute_span_mask
from w2vbert.model.random_projection import RandomProjectionQuantizer
from w2vbert.model.w2vbert import (
    W2VBertEncoder,
    create_w2vbert_encoder,
    padding_mask_or_none,
)


@dataclass
class BestRqOutput:
    """Everything ``best_rq_loss`` needs; masked-step tensors (leading B) list the masked steps
    in row-major order of ``mask``."""

    mask: Tensor
    """(N, S) bool, ``True`` = masked step."""
    seq_lens: Tensor
    """(N,) valid encoder steps."""
    target_ids: Tensor
    """(B, G) int64 codes of the clean input at masked steps."""
    mlm_logits: Tensor
    """(B, G, V) logits of the MLM heads."""
    code_perplexity: Tensor
    """() perplexity of the targets' code histogram, summed over codebooks (logging)."""
    code_usage: Tensor
    """() fraction of the G*V codes among this batch's targets (logging)."""


class BestRqModel(nn.Module):
    """BEST-RQ pre-training model; ``.encoder`` is the :class:`W2VBertEncoder` to fine-tune."""

    def __init__(
        self,
        encoder: W2VBertEncoder,
        quantizer: RandomProjectionQuantizer,
        *,
        mask_p: float,
        mask_span_len: int,
        min_num_mask_spans: int = 1,
        noise_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        g, v = quantizer.num_codebooks, quantizer.num_entries
        self.mlm_head = nn.Linear(encoder.output_dim, g * v)  # G softmax heads, one Linear
        self.mask_p = mask_p
        self.mask_span_len = mask_span_len
        self.min_num_mask_spans = min_num_mask_spans
        self.noise_std = noise_std

    def set_num_updates(self, num_updates: int) -> None:
        """Nothing is annealed (kept so that the training loop treats every pre-training model alike)."""

    def forward(
        self, x: Tensor, x_lens: Tensor, *, generator: torch.Generator | None = None
    ) -> BestRqOutput:
        """Pre-training forward.

        Args:
            x: (N, T, F) log-mel filterbanks; x_lens: (N,) valid frames.
            generator: for the span mask and the noise (global RNG if ``None``).
        """
        fe = self.encoder.feature_encoder
        num_frames = x.size(1)
        seq_lens = fe.output_lengths(x_lens)  # (N,)
        num_steps = int(fe.output_lengths(num_frames))
        mask = compute_span_mask(
            seq_lens, num_steps, self.mask_p, self.mask_span_len, self.min_num_mask_spans,
            generator=generator,
        )  # fmt: skip  (N, S)

        normalized = fe.normalize(x, x_lens)  # (N, T, F), zero at padding
        q = self.quantizer(fe.stack(normalized)[mask])  # (B, stride * F) -> codes (B, G)

        frame_mask = mask.repeat_interleave(fe.frame_stride, dim=1)[:, :num_frames]  # (N, T)
        noise = torch.randn(
            normalized.shape, generator=generator, device=x.device, dtype=normalized.dtype
        )
        noisy = torch.where(frame_mask.unsqueeze(2), noise * self.noise_std, normalized)
        feats, seq_lens = fe(noisy, x_lens, normalized=True)  # (N, S, M)

        padding_mask = padding_mask_or_none(seq_lens, num_steps)
        seqs = self.encoder.contrastive(feats, padding_mask)  # no blocks for BEST-RQ
        seqs = self.encoder.mlm(seqs, padding_mask)
        g, v = self.quantizer.num_codebooks, self.quantizer.num_entries
        logits = self.mlm_head(seqs[mask]).view(-1, g, v)  # (B, M) -> (B, G, V)
        return BestRqOutput(
            mask=mask,
            seq_lens=seq_lens,
            target_ids=q.code_ids,
            mlm_logits=logits,
            code_perplexity=q.code_perplexity,
            code_usage=q.code_usage,
        )


def create_best_rq_model(config: W2VBertConfig) -> BestRqModel:
    """The BEST-RQ pre-training model of ``config`` (``config.method == "best-rq"``)."""
    if config.method != "best-rq":
        raise ValueError(
            f"`config.method` must be 'best-rq' (use with_objective(config, 'best-rq')), but is "
            f"{config.method!r} instead."
        )
    encoder = create_w2vbert_encoder(config)
    quantizer = RandomProjectionQuantizer(
        input_dim=config.frame_stride * config.num_mel_bins,
        num_codebooks=config.num_codebooks,
        num_entries=config.num_codebook_entries,
        code_dim=config.codebook_dim,
        seed=config.random_projection_seed,
    )
    return BestRqModel(
        encoder,
        quantizer,
        mask_p=config.mask_p,
        mask_span_len=config.mask_span_len,
        min_num_mask_spans=config.min_num_mask_spans,
        noise_std=config.mask_noise_std,
    )
