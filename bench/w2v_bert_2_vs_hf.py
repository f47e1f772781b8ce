#!/usr/bin/env python3
"""Our w2v-BERT 2.0 encoder against transformers' Wav2Vec2BertModel on the same weights.

    python bench/w2v_bert_2_vs_hf.py                      # CPU: 6 blocks of dim 512, 4 x 10 s, 2 threads
    python bench/w2v_bert_2_vs_hf.py --full --device cuda # the released size (24 x 1024) on a GPU

One run, side by side: a random ``Wav2Vec2BertModel`` (dropout 0) is saved with
``save_pretrained``; each implementation then runs in its own process (so peak memory is its own),
loads the same weights (ours through ``--init-from``'s loader), checks its eval output against
the other's on a fixed padded batch, and times forward + backward of a training step on
``--batch`` utterances of ``--seconds`` s. Printed: audio-seconds per second, peak memory above
the loaded model (CPU: RSS sampled every 2 ms during the timed steps; GPU: max allocated), and the max abs output difference. Goal
(issue 16): >= 2x transformers' audio-s/s and <= 0.6x its peak memory, outputs equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _model_kwargs(a: argparse.Namespace) -> dict:
    if a.full:
        return dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    return dict(hidden_size=a.dim, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                intermediate_size=4 * a.dim)  # fmt: skip


def make_reference(a: argparse.Namespace, out: Path) -> None:
    import torch
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**_model_kwargs(a), layerdrop=0.0, hidden_dropout=0.0,
                                attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                                conformer_conv_dropout=0.0, mask_time_prob=0.0)  # fmt: skip
    Wav2Vec2BertModel(config).save_pretrained(out)


def _inputs(a: argparse.Namespace, device):
    """(N, T, 80) raw fbank-like input and lengths (the last utterances 10 % and 25 % shorter)."""
    import torch

    g = torch.Generator().manual_seed(1)
    frames = int(a.seconds * 100)
    x = torch.randn(a.batch, frames, 80, generator=g) * 3 + 5
    lens = torch.full((a.batch,), frames)
    if a.batch > 1:
        lens[-1] = int(frames * 0.75)
    if a.batch > 2:
        lens[-2] = int(frames * 0.9)
    return x.to(device), lens.to(device)


def worker(a: argparse.Namespace) -> None:
    import torch
    from _harness import current_rss_mb, set_threads

    set_threads(a.threads)
    device = torch.device(a.device)
    x, lens = _inputs(a, device)
    from w2vbert.model.feature_encoder import StackedFbankFrontend

    frontend = StackedFbankFrontend(model_dim=8)  # the normalisation + stacking both sides use
    feats = frontend.stacked_input(x, lens)  # (N, S, 160)
    steps = frontend.output_lengths(lens)
    mask = (torch.arange(feats.size(1), device=device)[None] < steps[:, None]).long()

    if a.impl == "hf":
        from transformers import Wav2Vec2BertModel

        model = Wav2Vec2BertModel.from_pretrained(a.weights).to(device)

        def run():
            return model(input_features=feats, attention_mask=mask).last_hidden_state
    else:
        from w2vbert.model.factory import config_from_params, load_encoder_weights
        from w2vbert.model.w2vbert import create_w2vbert_encoder
        from w2vbert.training.init_checkpoint import load_init_checkpoint

        ckpt = load_init_checkpoint(str(a.weights))
        model = create_w2vbert_encoder(config_from_params(ckpt["params"]))
        load_encoder_weights(model, ckpt["model"], str(a.weights))
        model = model.to(device)

        def run():
            return model(x, lens)[0]

    model.eval()
    with torch.no_grad():
        out = run()
    torch.save({"out": out.float().cpu(), "steps": steps.cpu()}, a.result + ".pt")

    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = current_rss_mb()
    sampled = [base_rss]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss cannot be reset after loading: sample the RSS instead
        while not done.is_set():
            sampled.append(current_rss_mb())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        y = run()
        (y.float().square().mean()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    done.set()
    sampler.join()
    step = sorted(times)[len(times) // 2]
    audio = float(lens.sum()) / 100.0
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)  # the step's FLOPs (matmuls, convolutions, SDPA)
    with counter:
        run().float().square().mean().backward()
    flops = counter.get_total_flops()
    from _harness import matmul_gflops

    peak_gflops = matmul_gflops(device=a.device) if device.type == "cpu" else None
    peak = ((torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda"
            else max(sampled) - base_rss)  # fmt: skip
    Path(a.result).write_text(json.dumps({"impl": a.impl, "step_s": step, "audio_s_per_s": audio / step,
                                          "peak_mb": peak, "params": sum(p.numel() for p in model.parameters()),
                                          "gflop": flops / 1e9, "matmul_peak_gflops": peak_gflops}))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--full", action="store_true", help="the released size: 24 blocks of dim 1024")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--impl", choices=("ours", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.impl:
        worker(a)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "hf"
        make_reference(a, weights)
        results = {}
        for impl in ("hf", "ours"):
            res = Path(tmp) / f"{impl}.json"
            cmd = [sys.executable, __file__, *sys.argv[1:], "--impl", impl, "--weights", str(weights),
                   "--result", str(res)]  # fmt: skip
            subprocess.run(cmd, check=True)
            results[impl] = json.loads(res.read_text())
            results[impl]["out"] = torch.load(str(res) + ".pt")
    hf, ours = results["hf"], results["ours"]
    diff = max(float((ours["out"]["out"][i, :n] - hf["out"]["out"][i, :n]).abs().max())
               for i, n in enumerate(hf["out"]["steps"].tolist()))  # fmt: skip
    size = "24 x 1024" if a.full else f"{a.layers} x {a.dim}"
    print(f"\nw2v-BERT 2.0 encoder ({size}, {hf['params'] / 1e6:.1f}M parameters), forward + backward, "
          f"{a.batch} x {a.seconds:g} s, {a.device}, {a.threads} threads")  # fmt: skip
    print("| implementation | step (s) | audio-s/s | peak memory (MiB) | GFLOP/step | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name, r in (("transformers Wav2Vec2BertModel", hf), ("ours (w2v-bert-2.0 config)", ours)):
        print(f"| {name} | {r['step_s']:.3f} | {r['audio_s_per_s']:.1f} | {r['peak_mb']:.0f} | "
              f"{r['gflop']:.1f} | {r['gflop'] / r['step_s']:.0f} |")  # fmt: skip
    peaks = [r["matmul_peak_gflops"] for r in (hf, ours) if r["matmul_peak_gflops"]]
    if peaks:  # the fastest any implementation of our FLOPs could be, against transformers' step
        ceiling = hf["step_s"] / (ours["gflop"] / max(peaks))
        print(f"\nfp32 matmul peak {max(peaks):.0f} GFLOP/s: our step's {ours['gflop']:.1f} GFLOP at that "
              f"peak would take {ours['gflop'] / max(peaks):.3f} s, {ceiling:.2f}x transformers' step")  # fmt: skip
    speed = ours["audio_s_per_s"] / hf["audio_s_per_s"]
    memory = ours["peak_mb"] / max(hf["peak_mb"], 1e-9)
    print(f"\nspeed {speed:.2f}x (goal >= 2), peak memory {memory:.2f}x (goal <= 0.6), "
          f"max abs output difference {diff:.2e} (eval, same weights)")
    print("BENCH_RESULT " + json.dumps({"speed_ratio": speed, "memory_ratio": memory, "max_abs_diff": diff,
                                         "hf": {k: v for k, v in hf.items() if k != "out"},
                                         "ours": {k: v for k, v in ours.items() if k != "out"}}))  # fmt: skip


if __name__ == "__main__":
    main()
