"""Streaming RTF on 1 thread, sherpa-onnx's OnlineRecognizer (fp32, int8) against PyTorch's
streaming greedy search, and whether their transcripts agree, on real speech (AN4 test audio,
see ../shared/data/README.md) with the mini preset made streamable (random weights: the speed
and the agreement are measured, not the accuracy).

    python bench/streaming_rtf.py /path/to/an4 --num-utterances 40
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from w2vbert.export.decode_runs import Utterance, read_tokens
from w2vbert.export.onnx_streaming import export_streaming_transducer
from w2vbert.export.streaming_check import pytorch_stream_decode, sherpa_stream_decode
from w2vbert.model.config import mini, with_streaming
from w2vbert.model.transducer import create_transducer
from w2vbert.model.w2vbert import create_w2vbert_encoder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("an4", type=Path)
    parser.add_argument("--num-utterances", type=int, default=40)
    parser.add_argument("--left-context-ms", type=int, default=2560)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = create_w2vbert_encoder(with_streaming(mini())).eval()
    model = create_transducer(encoder, encoder.output_dim, 32).eval()
    paths = sorted((args.an4 / "wav" / "an4test_clstk").rglob("*.raw"))[: args.num_utterances]
    utts = [
        Utterance(id=p.stem, samples=np.fromfile(p, dtype=">i2").astype(np.float32) / 32768)
        for p in paths
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.txt"
        symbols = ["<blk>", "<sos/eos>", "<unk>"]
        symbols += [f"\u2581{chr(97 + i % 26)}{i}" for i in range(29)]
        tokens.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))
        for chunk in (8, 16):
            left = args.left_context_ms // (40 * chunk)
            fp32, int8 = export_streaming_transducer(
                model, tmp, f"c{chunk}", tokens, chunk_size=chunk, left_chunks=left, int8=True
            )
            ours = pytorch_stream_decode(
                model, utts, read_tokens(tokens), chunk_size=chunk, left_chunks=left
            )
            sherpa, sherpa8 = sherpa_stream_decode(fp32, utts), sherpa_stream_decode(int8, utts)
            same = sum(ours.hyps[k] == sherpa.hyps[k] for k in ours.hyps)
            print(
                f"chunk {chunk * 40} ms, left {left} chunks, {ours.audio_seconds:.0f} s of audio: "
                f"RTF PyTorch {ours.rtf:.4f}, sherpa-onnx fp32 {sherpa.rtf:.4f}, int8 "
                f"{sherpa8.rtf:.4f}; sherpa-onnx fp32 transcripts = PyTorch: {same}/{len(utts)}"
            )


if __name__ == "__main__":
    main()
