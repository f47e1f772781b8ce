#!/usr/bin/env python3
"""Write a randomly initialised, w2v-BERT 2.0-shaped Hugging Face model directory.

    python local/make_tiny_w2v_bert_2.py --out-dir exp/w2v-bert-2.0-tiny [--layers 3 --dim 32]
    # the real width with 2 blocks: --layers 2 --dim 1024 --heads 16 --ffn-dim 4096 --kernel 31 \\
    #     --shaw-left 64 --shaw-right 8

What ``huggingface-cli download facebook/w2v-bert-2.0`` leaves, at a size a CPU trains in
minutes: ``config.json`` + ``model.safetensors`` of a ``transformers.Wav2Vec2BertModel`` with
w2v-BERT 2.0's architecture (Shaw positions, causal conv, stacked-fbank front end) and
``preprocessor_config.json`` of its ``SeamlessM4TFeatureExtractor``. For trying the recipe's
``--init-from`` path (and its tests) without downloading 2.3 GB; needs transformers
(requirements-test.txt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True, help="Directory to write (replaced).")
    p.add_argument("--layers", type=int, default=3, help="Conformer blocks.")
    p.add_argument("--dim", type=int, default=32, help="Model dim (head dim = dim / heads, even).")
    p.add_argument("--heads", type=int, default=2, help="Attention heads.")
    p.add_argument("--ffn-dim", type=int, default=64, help="Feed-forward inner dim.")
    p.add_argument("--kernel", type=int, default=5, help="Depthwise conv kernel (odd).")
    p.add_argument("--shaw-left", type=int, default=6, help="Shaw: largest left offset (real: 64).")
    p.add_argument("--shaw-right", type=int, default=2, help="Shaw: largest right offset (real: 8).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    try:
        import torch
        from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel
    except ImportError as e:
        sys.exit(f"make_tiny_w2v_bert_2.py needs transformers (pip install -r requirements-test.txt): {e}")
    torch.manual_seed(args.seed)
    config = Wav2Vec2BertConfig(
        hidden_size=args.dim, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.ffn_dim, conv_depthwise_kernel_size=args.kernel,
        left_max_position_embeddings=args.shaw_left,
        right_max_position_embeddings=args.shaw_right, layerdrop=0.0,
    )  # fmt: skip
    model = Wav2Vec2BertModel(config).eval()
    with torch.no_grad():  # LayerNorms at 1/0 and zero biases would hide mapping mistakes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out_dir)
    SeamlessM4TFeatureExtractor().save_pretrained(args.out_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"Wrote {args.out_dir}: Wav2Vec2BertModel, {args.layers} blocks of dim {args.dim}, {n} parameters")


if __name__ == "__main__":
    main()
