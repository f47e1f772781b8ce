#!/usr/bin/env python
"""One w2v-BERT pre-training step of fairseq2 0.8.1 (forward + backward + AdamW), random weights.

Runs in the fairseq2 peer venv (see bench/peers.py). Input: random 80-dim fbank at 100 Hz,
which fairseq2's fbank front end stacks x2 (160-dim at 50 Hz, 20 ms encoder steps).
Loss: ``W2VBertModel``'s own (BERT masked prediction + wav2vec 2.0 contrastive + diversity +
feature penalty). fairseq2 0.8.1's ``compute_loss`` hands the BERT logits (M, V, G) to a
cross-entropy that reads 3-D input as (N, S, V) and fails; the logits are transposed to
(M, G, V), which is the per-codebook loss it means.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import emit_step, measure_step, start_step  # noqa: E402
from _step_args import step_parser  # noqa: E402


def main() -> None:
    a = step_parser(__doc__.splitlines()[0]).parse_args()
    rss_start = start_step(a)
    import fairseq2.models.w2vbert.model as fs2_w2vbert_model
    import torch
    from fairseq2.models.w2vbert import W2VBertConfig, create_w2vbert_model
    from fairseq2.nn import BatchLayout

    original_ce = fs2_w2vbert_model.cross_entropy

    def per_codebook_ce(logits, targets, pad_idx, **kwargs):  # (M, V, G) -> (M, G, V)
        return original_ce(logits.transpose(1, 2), targets, pad_idx, **kwargs)

    fs2_w2vbert_model.cross_entropy = per_codebook_ce

    cfg = W2VBertConfig()
    w2v2 = cfg.w2v2_config
    enc = w2v2.encoder_config
    enc.model_dim = a.dim
    enc.num_encoder_layers = a.contrastive_layers + a.mlm_layers
    enc.num_encoder_attn_heads = a.heads
    enc.ffn_inner_dim = a.ffn
    enc.depthwise_conv_kernel_size = a.kernel
    cfg.num_bert_encoder_layers = a.mlm_layers
    w2v2.final_dim = a.dim
    w2v2.quantized_dim = a.dim
    w2v2.num_codebooks = 1
    w2v2.num_codebook_entries = a.codebook_entries
    w2v2.num_distractors = a.distractors
    res = cfg.validate()
    if res.has_error():
        raise SystemExit(f"fairseq2 W2VBertConfig is invalid: {res}")

    model = create_w2vbert_model(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)

    frames = int(round(a.seconds * 100))  # 10 ms fbank hop
    x = torch.randn(a.batch, frames, 80)
    layout = BatchLayout.of(x)

    steps_seen: list[int] = []

    def encoder_pre_hook(_module, inputs):  # the conformer stack's input: (N, S, M)
        steps_seen.append(int(inputs[0].size(1)))

    hook = model.w2v2_model.encoder.register_forward_pre_hook(encoder_pre_hook)
    last = {}

    def step() -> None:
        loss, _ = model(x, layout)
        loss.aggregate.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        last["loss"] = float(loss.aggregate.detach())

    measured = measure_step(
        a, model, step, forward_backward=lambda: model(x, layout)[0].aggregate.backward()
    )
    hook.remove()  # it saw the FLOP pass too: same input, same encoder steps
    emit_step(
        measured,
        system="fairseq2",
        rss_start=rss_start,
        final_loss=last["loss"],
        frame_rate_hz=round(steps_seen[-1] / a.seconds, 2) if steps_seen else None,
        encoder_steps=steps_seen[-1] if steps_seen else None,
    )


if __name__ == "__main__":
    main()
