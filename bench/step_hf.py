#!/usr/bin/env python
"""One pre-training step of Hugging Face ``Wav2Vec2ConformerForPreTraining`` (fwd + bwd + AdamW).

Runs in the hf peer venv (see bench/peers.py). Contrastive + diversity loss only (HF has no
MLM head): all 8 layers feed the contrastive loss. Front end: HF's 7-layer CNN over the raw
16 kHz waveform (320x down-sampling, 20 ms steps), 512 channels as its default.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import emit_step, measure_step, start_step  # noqa: E402
from _step_args import step_parser  # noqa: E402


def main() -> None:
    p = step_parser(__doc__.splitlines()[0])
    p.add_argument("--conv-dim", type=int, default=512, help="channels of the CNN feature encoder")
    a = p.parse_args()
    rss_start = start_step(a, seed_numpy=True)
    import torch
    from transformers import Wav2Vec2ConformerConfig, Wav2Vec2ConformerForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        _compute_mask_indices,
        _sample_negative_indices,
    )

    cfg = Wav2Vec2ConformerConfig(
        hidden_size=a.dim,
        num_hidden_layers=a.contrastive_layers + a.mlm_layers,
        num_attention_heads=a.heads,
        intermediate_size=a.ffn,
        conv_depthwise_kernel_size=a.kernel,
        position_embeddings_type="relative",
        conv_dim=(a.conv_dim,) * 7,
        num_codevector_groups=1,
        num_codevectors_per_group=a.codebook_entries,
        codevector_dim=a.dim,
        proj_codevector_dim=a.dim,
        num_negatives=a.distractors,
        mask_time_prob=0.65,
        mask_time_length=10,
        mask_time_min_masks=2,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    model = Wav2Vec2ConformerForPreTraining(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)

    samples = int(round(a.seconds * 16000))
    x = torch.randn(a.batch, samples)
    seq_len = int(model._get_feat_extract_output_lengths(torch.tensor(samples)))

    def make_masks():
        mask = _compute_mask_indices(
            (a.batch, seq_len), mask_prob=0.65, mask_length=10, min_masks=2
        )
        neg = _sample_negative_indices(
            (a.batch, seq_len), cfg.num_negatives, mask_time_indices=mask
        )
        return torch.tensor(mask, dtype=torch.bool), torch.tensor(neg, dtype=torch.long)

    last = {}

    def step() -> None:
        mask, neg = make_masks()  # numpy sampling, part of the step as in a real loop
        out = model(x, mask_time_indices=mask, sampled_negative_indices=neg)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        last["loss"] = float(out.loss.detach())

    def forward_backward() -> None:  # the masks' numpy sampling counts no FLOPs
        mask, neg = make_masks()
        model(x, mask_time_indices=mask, sampled_negative_indices=neg).loss.backward()

    measured = measure_step(a, model, step, forward_backward)
    emit_step(
        measured,
        system="hf",
        rss_start=rss_start,
        final_loss=last["loss"],
        frame_rate_hz=round(seq_len / a.seconds, 2),
        encoder_steps=seq_len,
    )


if __name__ == "__main__":
    main()
