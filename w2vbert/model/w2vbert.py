"""W2VBertEncoder (fine-tuning, export) and W2VBertModel (pre-training), and their factories.

Shapes: N batch, T fbank frames, S encoder steps, M model dim, B masked steps in the batch,
C codevector dim, G codebooks, V entries per codebook.

Pre-training forward (Chung et al. 2021):
feature encoder -> span mask -> the *unmasked* features at masked steps go to the quantizer
(targets: codevectors and code ids) -> masked steps replaced by a learned vector (or random vectors) -> contrastive
module -> context -> projection to C at masked steps (contrastive loss); MLM module on the
context -> linear head to G*V logits at masked steps (MLM loss). Losses are computed by
``w2vbert.objectives.w2vbert_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from w2vbert.model.chunking import FULL_CONTEXT
from w2vbert.model.config import W2VBertConfig
from w2vbert.model.conformer import ConformerBlock, ConformerEncoder
from w2vbert.model.feature_encoder import FbankFeatureEncoder, StackedFbankFrontend
from w2vbert.model.masking import compute_span_mask, make_padding_mask
from w2vbert.model.quantizer import GumbelVectorQuantizer


def padding_mask_or_none(seq_lens: Tensor, max_len: int) -> Tensor | None:
    """(N, S) padding mask, or ``None`` when no step is padding (lets SDPA skip the mask).

    While tracing or exporting the mask is always built, so the graph works for any lengths.
    """
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not exporting and bool((seq_lens == max_len).all()):
        return None
    return make_padding_mask(seq_lens, max_len)


class W2VBertEncoder(nn.Module):
    """Feature encoder -> contrastive module -> MLM module: the encoder that fine-tuning uses."""

    def __init__(
        self,
        feature_encoder: FbankFeatureEncoder | StackedFbankFrontend,
        contrastive: ConformerEncoder,
        mlm: ConformerEncoder,
        output_dim: int,
    ) -> None:
        super().__init__()
        self.feature_encoder = feature_encoder
        self.contrastive = contrastive
        self.mlm = mlm
        self.output_dim = output_dim

    def output_lengths(self, x_lens: Tensor | int) -> Tensor | int:
        """Encoder steps for ``x_lens`` fbank frames."""
        return self.feature_encoder.output_lengths(x_lens)

    def forward(
        self,
        x: Tensor,
        x_lens: Tensor,
        *,
        chunk_size: int = FULL_CONTEXT,
        left_chunks: int = FULL_CONTEXT,
    ) -> tuple[Tensor, Tensor]:
        """Encode fbank.

        Args:
            x: (N, T, 80) log-mel filterbanks.
            x_lens: (N,) valid frames.
            chunk_size, left_chunks: chunked attention in encoder steps / chunks, -1 = full
                context (:mod:`w2vbert.model.chunking`); what :mod:`w2vbert.model.streaming`
                computes chunk by chunk.

        Returns:
            encoder_out (N, S, M) and encoder_out_lens (N,).
        """
        seqs, seq_lens = self.feature_encoder(x, x_lens)
        padding_mask = padding_mask_or_none(seq_lens, seqs.size(1))
        chunks = {"chunk_size": chunk_size, "left_chunks": left_chunks}
        seqs = self.contrastive(seqs, padding_mask, **chunks)
        seqs = self.mlm(seqs, padding_mask, **chunks)
        return seqs, seq_lens


@dataclass
class W2VBertOutput:
    """Everything ``w2vbert_loss`` needs. Masked-step tensors (leading B) list the masked steps
    in row-major order of ``mask`` (utterance by utterance, in time order)."""

    mask: Tensor
    """(N, S) bool, ``True`` = masked step."""
    seq_lens: Tensor
    """(N,) valid encoder steps."""
    num_masked: Tensor
    """(N,) int64 masked steps per utterance (sums to B)."""
    quantized_targets: Tensor
    """(B, C) quantizer codevectors of the unmasked features, through the target projection when
    the model has one (contrastive positives)."""
    target_ids: Tensor
    """(B, G) int64 code ids (MLM targets; discrete, so no gradient)."""
    projected_context: Tensor | None
    """(B, C) context vectors projected to C; ``None`` without contrastive loss."""
    mlm_logits: Tensor | None
    """(B, G_tgt, V) MLM head logits for the first G_tgt <= G codebooks (the MLM targets are
    ``target_ids[:, :G_tgt]``); ``None`` without MLM loss."""
    code_probs: Tensor
    """(G, V) batch-averaged soft code probabilities over masked steps (diversity loss)."""
    prob_perplexity: Tensor
    """() perplexity of ``code_probs`` summed over codebooks (in [G, G*V])."""
    code_perplexity: Tensor
    """() perplexity of the hard codes (logging)."""
    code_usage: Tensor
    """() fraction of the G*V codes chosen in this batch (logging)."""
    temperature: float
    """Gumbel temperature used."""


class W2VBertModel(nn.Module):
    """w2v-BERT pre-training model; ``.encoder`` is the :class:`W2VBertEncoder` to fine-tune."""

    def __init__(
        self,
        encoder: W2VBertEncoder,
        quantizer: GumbelVectorQuantizer,
        *,
        final_proj: nn.Linear | None,
        mlm_head: nn.Linear | None,
        target_proj: nn.Linear | None = None,
        mask_p: float,
        mask_span_len: int,
        min_num_mask_spans: int = 1,
        quantizer_input: str = "features",
        mask_embed: bool = False,
    ) -> None:
        """
        Args:
            final_proj: Linear(M, C) on the context at masked steps; ``None`` = no contrastive loss.
            mlm_head: Linear(M, G_tgt*V) on the MLM module's output at masked steps, predicting the
                first G_tgt codebooks' ids; ``None`` = no MLM.
            target_proj: Linear(C, C) on the codevectors (contrastive targets); ``None`` = none.
            quantizer_input: ``"fbank"`` (stacked normalised fbank), ``"features"`` (the
                feature encoder's output) or ``"frontend-norm"`` (the stacked front end's
                LayerNorm output), see ``W2VBertConfig.quantizer_input``.
            mask_embed: replace masked steps by one learned vector (else by random vectors).
        """
        super().__init__()
        if final_proj is None and mlm_head is None:
            raise ValueError("`final_proj` and `mlm_head` must not both be None, but are.")
        self.encoder = encoder
        self.quantizer = quantizer
        self.final_proj = final_proj
        self.mlm_head = mlm_head
        self.target_proj = target_proj
        self.mask_p = mask_p
        self.mask_span_len = mask_span_len
        self.min_num_mask_spans = min_num_mask_spans
        self.quantizer_input = quantizer_input
        self.mask_embed = None
        if mask_embed:
            self.mask_embed = nn.Parameter(torch.empty(encoder.output_dim).uniform_())

    def set_num_updates(self, num_updates: int) -> None:
        """Call once per optimiser step: anneals the quantizer's Gumbel temperature."""
        self.quantizer.set_num_updates(num_updates)

    def forward(
        self, x: Tensor, x_lens: Tensor, *, generator: torch.Generator | None = None
    ) -> W2VBertOutput:
        """Pre-training forward.

        Args:
            x: (N, T, 80) log-mel filterbanks; x_lens: (N,) valid frames.
            generator: for the span mask and any random vectors (global RNG if ``None``).
        """
        feats, seq_lens = self.encoder.feature_encoder(x, x_lens)  # (N, S, M)
        num_seqs, num_steps, _ = feats.shape
        mask = compute_span_mask(
            seq_lens, num_steps, self.mask_p, self.mask_span_len, self.min_num_mask_spans,
            generator=generator,
        )  # fmt: skip
        num_masked = mask.sum(dim=1)  # (N,)

        if self.quantizer_input == "fbank":
            q_in = self.encoder.feature_encoder.stacked_input(x, x_lens)  # (N, S, stride * F)
        elif self.quantizer_input == "frontend-norm":  # stacked front end: LayerNorm(stacked)
            fe = self.encoder.feature_encoder
            q_in = fe.layer_norm(fe.stacked_input(x, x_lens))  # (N, S, stride * F)
        else:
            q_in = feats  # (N, S, M)
        q = self.quantizer(q_in[mask])  # unmasked input at masked steps: (B, M or stride * F)

        padding_mask = padding_mask_or_none(seq_lens, num_steps)
        if self.mask_embed is not None:
            fill = self.mask_embed.to(feats.dtype).expand_as(feats)  # one learned vector
        else:  # random vectors with the features' standard deviation
            fill = torch.randn(
                feats.shape, generator=generator, device=feats.device, dtype=feats.dtype
            )
            fill = fill * _feature_std(feats.detach(), padding_mask)
        masked = torch.where(mask.unsqueeze(2), fill, feats)

        context = self.encoder.contrastive(masked, padding_mask)  # (N, S, M)
        projected = None
        targets = q.quantized  # (B, C)
        if self.final_proj is not None:
            projected = self.final_proj(context[mask])  # (B, M) -> (B, C)
            if self.target_proj is not None:
                targets = self.target_proj(targets)
        mlm_logits = None
        if self.mlm_head is not None:
            mlm_out = self.encoder.mlm(context, padding_mask)[mask]  # (B, M)
            v = q.code_probs.size(1)
            mlm_logits = self.mlm_head(mlm_out).view(mlm_out.size(0), -1, v)  # (B, G_tgt, V)

        return W2VBertOutput(
            mask=mask,
            seq_lens=seq_lens,
            num_masked=num_masked,
            quantized_targets=targets,
            target_ids=q.code_ids,
            projected_context=projected,
            mlm_logits=mlm_logits,
            code_probs=q.code_probs,
            prob_perplexity=q.prob_perplexity,
            code_perplexity=q.code_perplexity,
            code_usage=q.code_usage,
            temperature=q.temperature,
        )


def _feature_std(feats: Tensor, padding_mask: Tensor | None) -> Tensor:
    """() standard deviation of the feature values at valid steps."""
    if padding_mask is None:
        return feats.float().std().to(feats.dtype)
    valid = (~padding_mask).unsqueeze(2).to(torch.float32)  # (N, S, 1)
    count = (valid.sum() * feats.size(2)).clamp(min=2.0)
    values = feats.float() * valid
    mean = values.sum() / count
    var = ((values - mean) * valid).square().sum() / (count - 1)
    return var.sqrt().to(feats.dtype)


def _conformer(config: W2VBertConfig, num_layers: int) -> ConformerEncoder:
    shaw = None
    if config.position_encoding == "shaw":
        shaw = (config.shaw_left_context, config.shaw_right_context)
    blocks = [
        ConformerBlock(
            model_dim=config.model_dim,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            conv_kernel_size=config.conv_kernel_size,
            dropout_p=config.dropout_p,
            attn_dropout_p=config.attn_dropout_p,
            ffn_inner_dropout_p=config.ffn_inner_dropout_p,
            shaw_window=shaw,
            conv_causal=config.conv_causal,
            conv_bias=config.conv_bias,
        )
        for _ in range(num_layers)
    ]
    return ConformerEncoder(
        blocks, head_dim=config.model_dim // config.num_heads, rotary_base=config.rotary_base
    )


def create_w2vbert_encoder(config: W2VBertConfig) -> W2VBertEncoder:
    """The encoder alone (what fine-tuning builds before loading pre-trained weights)."""
    config.validate()
    feature_encoder: FbankFeatureEncoder | StackedFbankFrontend
    if config.frontend == "stacked":
        feature_encoder = StackedFbankFrontend(
            num_mel_bins=config.num_mel_bins,
            model_dim=config.model_dim,
            frame_stride=config.frame_stride,
            input_norm=config.input_norm,
            dropout_p=config.feature_dropout_p,
        )
    else:
        feature_encoder = FbankFeatureEncoder(
            num_mel_bins=config.num_mel_bins,
            model_dim=config.model_dim,
            num_channels=config.feature_encoder_channels,
            frame_stride=config.frame_stride,
            input_norm=config.input_norm,
            dropout_p=config.feature_dropout_p,
        )
    return W2VBertEncoder(
        feature_encoder,
        _conformer(config, config.num_contrastive_layers),
        _conformer(config, config.num_mlm_layers),
        output_dim=config.model_dim,
    )


def create_w2vbert_model(config: W2VBertConfig) -> W2VBertModel:
    """The pre-training model. The contrastive projection exists iff ``contrastive_weight > 0``,
    the MLM head iff ``mlm_weight > 0``."""
    encoder = create_w2vbert_encoder(config)
    quantizer_input_dim = config.model_dim
    if config.quantizer_input in ("fbank", "frontend-norm"):
        quantizer_input_dim = config.frame_stride * config.num_mel_bins
    quantizer = GumbelVectorQuantizer(
        input_dim=quantizer_input_dim,
        num_codebooks=config.num_codebooks,
        num_entries=config.num_codebook_entries,
        codebook_dim=config.codebook_dim,
        max_temp=config.gumbel_max_temp,
        min_temp=config.gumbel_min_temp,
        temp_decay=config.gumbel_temp_decay,
    )
    final_proj = target_proj = None
    if config.contrastive_weight > 0.0:
        final_proj = nn.Linear(config.model_dim, config.codebook_dim)
        if config.target_proj:
            target_proj = nn.Linear(config.codebook_dim, config.codebook_dim)
    mlm_head = None
    if config.mlm_weight > 0.0:
        num_outputs = config.mlm_num_codebooks * config.num_codebook_entries  # G_tgt * V
        mlm_head = nn.Linear(config.model_dim, num_outputs)
    return W2VBertModel(
        encoder,
        quantizer,
        final_proj=final_proj,
        mlm_head=mlm_head,
        target_proj=target_proj,
        mask_p=config.mask_p,
        mask_span_len=config.mask_span_len,
        min_num_mask_spans=config.min_num_mask_spans,
        quantizer_input=config.quantizer_input,
        mask_embed=config.mask_fill == "learned",
    )
