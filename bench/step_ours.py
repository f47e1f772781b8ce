#!/usr/bin/env python
"""One w2v-BERT pre-training step of this project (forward + backward + AdamW), random weights.

Model: ``create_w2vbert_model`` on the ``base`` preset replaced with the benchmark sizes
(``bench/_step_args.py``); loss: ``w2vbert_loss`` with the config's weights (contrastive +
0.1 diversity + MLM). Input: random 80-dim fbank at 100 Hz; ``--frame-stride 4`` gives the
paper's 40 ms encoder steps, ``2`` fairseq2's 20 ms.
"""

from __future__ import annotations

import dataclasses
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _harness import emit_step, measure_step, start_step  # noqa: E402
from _step_args import step_parser  # noqa: E402


def bench_config(a, preset: str = "base"):
    """The benchmark's ``W2VBertConfig``: ``preset`` with the sizes of ``a`` (parsed args)."""
    from w2vbert.model.config import get_w2vbert_config

    cfg = dataclasses.replace(
        get_w2vbert_config(preset),
        model_dim=a.dim,
        num_heads=a.heads,
        ffn_dim=a.ffn,
        conv_kernel_size=a.kernel,
        num_contrastive_layers=a.contrastive_layers,
        num_mlm_layers=a.mlm_layers,
        num_codebooks=1,
        num_codebook_entries=a.codebook_entries,
        codebook_dim=a.dim,
        num_distractors=a.distractors,
        frame_stride=a.frame_stride,
    )
    if a.fe_channels is not None:
        cfg = dataclasses.replace(cfg, feature_encoder_channels=a.fe_channels)
    cfg.validate()
    return cfg


def ours_parser():
    p = step_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--frame-stride",
        type=int,
        default=4,
        choices=[2, 4],
        help="fbank frames per encoder step: 4 = 40 ms, 2 = 20 ms",
    )
    p.add_argument(
        "--fe-channels",
        type=int,
        default=None,
        help="Conv2d channels of the feature encoder (default: the base preset's)",
    )
    return p


def build(a):
    """(model, optimizer, step function, x, x_lens) for the parsed args ``a``."""
    import torch

    from w2vbert.model.w2vbert import create_w2vbert_model
    from w2vbert.objectives.w2vbert_loss import w2vbert_loss
    from w2vbert.training.config import TrainingConfig
    from w2vbert.training.optim import create_optimizer

    cfg = bench_config(a)
    model = create_w2vbert_model(cfg)
    model.train()
    # The optimizer that pre-training builds (fused AdamW on CPU; the project's Adam settings).
    opt_config = TrainingConfig(optimizer="adamw", base_lr=a.lr, weight_decay=0.01)
    opt = create_optimizer(model.parameters(), opt_config)
    frames = int(round(a.seconds * 100))  # 10 ms fbank hop
    x = torch.randn(a.batch, frames, cfg.num_mel_bins)
    x_lens = torch.full((a.batch,), frames, dtype=torch.int64)
    loss_kwargs = cfg.loss_kwargs()
    state = {"updates": 0}

    def forward_backward():
        out = model(x, x_lens)
        loss = w2vbert_loss(out, **loss_kwargs)
        loss.aggregate.backward()
        return out, loss

    def step() -> None:
        out, loss = forward_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["updates"] += 1
        model.set_num_updates(state["updates"])
        state.update(
            loss=float(loss.aggregate.detach()),
            steps=int(out.seq_lens.max()),
            masked=int(out.num_masked.sum()),
        )

    return cfg, model, step, forward_backward, state


def main() -> None:
    a = ours_parser().parse_args()
    rss_start = start_step(a)
    cfg, model, step, forward_backward, state = build(a)
    measured = measure_step(a, model, step, forward_backward)
    emit_step(
        measured,
        system=f"ours-{10 * cfg.frame_stride}ms",
        rss_start=rss_start,
        final_loss=state["loss"],
        frame_rate_hz=round(state["steps"] / a.seconds, 2),
        encoder_steps=state["steps"],
        masked_fraction=round(state["masked"] / (state["steps"] * a.batch), 3),
        feature_encoder_channels=cfg.feature_encoder_channels,
    )


if __name__ == "__main__":
    main()
