#!/usr/bin/env python
"""Decoding real-time factor, 1 thread: PyTorch vs the sherpa-onnx export, greedy and beam.

One backend per process. The model is a random-weight Transducer (seeded, so both processes
build the same weights) around the benchmark's w2v-BERT encoder (d256, 4 + 4 blocks, 40 ms),
stateless decoder and joiner 512, vocabulary 500; the joiner's blank logit gets ``--blank-bias``
so that, as in a trained model, most frames emit nothing. Audio: seeded noise utterances of
3-8 s. Timing covers fbank + encoder + search (what :mod:`w2vbert.export.decode_runs` times);
the export itself is timed apart. Hypotheses are emitted so the two backends can be compared.

If the transducer, the searches or the export are missing, it emits ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _harness import emit, set_threads  # noqa: E402
from _step_args import step_parser  # noqa: E402

METHODS = ("greedy_search", "modified_beam_search")


def build_transducer(a):
    """Seeded random-weight Transducer on the benchmark encoder config."""
    import torch

    from step_ours import bench_config
    from w2vbert.model.transducer import create_transducer
    from w2vbert.model.w2vbert import create_w2vbert_encoder

    torch.manual_seed(a.seed)
    encoder = create_w2vbert_encoder(bench_config(a))
    model = create_transducer(encoder, encoder.output_dim, a.vocab, decoder_dim=512, joiner_dim=512)
    with torch.no_grad():
        model.joiner.output_linear.bias[model.blank_id] += a.blank_bias
    return model.eval()


def write_tokens(path: str, vocab: int) -> None:
    """``<blk> 0``, ``<sos/eos> 1``, ``<unk> 2``, then word-initial pieces ``▁tN``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("<blk> 0\n<sos/eos> 1\n<unk> 2\n")
        for i in range(3, vocab):
            f.write(f"\u2581t{i} {i}\n")


def make_utterances(a):
    import numpy as np

    from w2vbert.export.decode_runs import Utterance

    rng = np.random.default_rng(a.seed)
    utts = []
    for i in range(a.num_utts):
        seconds = rng.uniform(3.0, 8.0)
        samples = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        utts.append(Utterance(id=f"utt{i}", samples=samples))
    return utts


def main() -> None:
    p = step_parser(__doc__.splitlines()[0])
    p.add_argument("backend", choices=["pytorch", "sherpa-onnx"])
    p.add_argument("--vocab", type=int, default=500)
    p.add_argument("--num-utts", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=1, help="utterances decoded together")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument(
        "--blank-bias",
        type=float,
        default=1.0,
        help="added to the blank logit (1.0: ~3 tokens per audio second greedy)",
    )
    p.set_defaults(threads=1, frame_stride=4, fe_channels=None)
    a = p.parse_args()
    set_threads(a.threads)
    try:
        from w2vbert.decoding import search  # noqa: F401
        from w2vbert.export.decode_runs import pytorch_decode, read_tokens, sherpa_decode
        from w2vbert.export.onnx_export import export_transducer
        from w2vbert.model import transducer  # noqa: F401
    except ImportError as e:
        emit({"backend": a.backend, "error": f"not available: {e}"})
        return

    model = build_transducer(a)
    utts = make_utterances(a)
    result = {
        "backend": a.backend,
        "audio_seconds": round(sum(u.duration for u in utts), 2),
        "num_utts": len(utts),
        "batch_size": a.batch_size,
        "beam": a.beam,
        "methods": {},
    }
    with tempfile.TemporaryDirectory(prefix="w2vbert-bench-") as tmp:
        tokens = os.path.join(tmp, "tokens.txt")
        write_tokens(tokens, a.vocab)
        id_to_symbol = read_tokens(tokens)
        files = None
        if a.backend == "sherpa-onnx":
            t0 = time.perf_counter()
            files, _ = export_transducer(model, tmp, "bench", tokens)
            result["export_s"] = round(time.perf_counter() - t0, 2)

        def decode(batch: list, method: str, batch_size: int):
            """One decoding run of ``a.backend`` over ``batch``."""
            if files is None:
                return pytorch_decode(
                    model, batch, method, id_to_symbol, beam=a.beam, batch_size=batch_size
                )
            return sherpa_decode(
                files,
                batch,
                method,
                num_threads=a.threads,
                max_active_paths=a.beam,
                batch_size=batch_size,
            )

        for method in METHODS:
            for _ in range(a.warmup):  # one utterance, for lazy initialisation
                decode(utts[:1], method, batch_size=1)
            run = decode(utts, method, batch_size=a.batch_size)
            words = sum(len(h) for h in run.hyps.values())
            result["methods"][method] = {
                "rtf": round(run.rtf, 4),
                "elapsed_s": round(run.elapsed_seconds, 3),
                "tokens_per_audio_s": round(words / run.audio_seconds, 2),
                "hyps": {k: " ".join(v) for k, v in sorted(run.hyps.items())},
            }
            print(f"  {a.backend} {method}: RTF {run.rtf:.4f}", file=sys.stderr, flush=True)
    emit(result)


if __name__ == "__main__":
    main()
