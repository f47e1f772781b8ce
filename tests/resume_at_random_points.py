"""Kill or stop training at random moments, re-run the same command, compare with an uninterrupted run.

Not collected by pytest (slow; real signals). For each trial: start the job, SIGKILL it after a random
delay inside its training window, then re-run the identical command until it finishes; the final
weights (model and averaged model) must equal the uninterrupted run's bit for bit.

    python tests/resume_at_random_points.py --task toy       # toy model, tests/toy_training.py
    python tests/resume_at_random_points.py --task pretrain  # tiny w2v-BERT via python -m w2vbert.pretrain
    python tests/resume_at_random_points.py --task finetune  # tiny transducer via python -m w2vbert.finetune
    python tests/resume_at_random_points.py --signal term     # SIGTERM (pre-emption): a clean stop, exit 143
    python tests/resume_at_random_points.py --second-writer   # also start the same command twice at once

Prints one line per trial (kill time, newest checkpoint left, whether a temp file was caught mid-write)
and ``k/N bit-identical``; exit status 1 unless all are.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _commands(task: str, work: Path, step_sleep: float = 0.02) -> tuple[callable, callable]:
    """``(command(exp_dir) -> argv, final(exp_dir) -> dict)`` for the task."""
    if task == "toy":

        def cmd(exp: Path) -> list[str]:
            return [
                sys.executable,
                str(HERE / "toy_training.py"),
                "--exp-dir",
                str(exp),
                "--num-epochs",
                "4",
                "--save-every-n",
                "2",
                "--step-sleep",
                str(step_sleep),
            ]

        def final(exp: Path) -> dict:
            return torch.load(exp / "final-rank0.pt", weights_only=False)

        return cmd, final

    import tiny_corpus

    train, dev = tiny_corpus.make_cuts(work, "train", 24), tiny_corpus.make_cuts(
        work, "dev", 2, seed=1
    )
    data = f"--train-cuts {train} --valid-cuts {dev} --max-duration 5 --num-buckets 2 --device cpu"
    train_flags = (
        "--warmup-steps 5 --save-every-n 1 --keep-last-k 3 --num-epochs 5 --log-interval 5"
    )
    common = f"{data} {train_flags}".split()
    pretrain = [sys.executable, "-m", "w2vbert.pretrain", "--model-preset", "tiny"]
    if task == "pretrain":

        def cmd(exp: Path) -> list[str]:
            return [*pretrain, "--exp-dir", str(exp), *common]

    else:
        bpe = tiny_corpus.make_bpe(work)
        pre = work / "pretrain"
        pre_cmd = [*pretrain, "--exp-dir", str(pre), *data.split(), "--num-epochs", "1"]
        subprocess.run(pre_cmd, check=True, env=ENV, capture_output=True, cwd=ROOT)
        finetune = [
            sys.executable,
            "-m",
            "w2vbert.finetune",
            "--init-from",
            str(pre / "epoch-1.pt"),
        ]
        finetune += ["--bpe-model", str(bpe), "--decoder-dim", "16", "--joiner-dim", "16"]

        def cmd(exp: Path) -> list[str]:
            return [*finetune, "--exp-dir", str(exp), *common]

    def final(exp: Path) -> dict:
        return torch.load(exp / "epoch-5.pt", weights_only=False)

    return cmd, final


def _identical(a: dict, b: dict) -> bool:
    if a["batch_idx_train"] != b["batch_idx_train"]:
        return False
    return all(
        a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
        for key in ("model", "model_avg")
    )


def _newest_batch(exp: Path) -> int:
    """Largest <batch> of the checkpoint-<batch>.pt files in ``exp`` (0 if none)."""
    nums = [
        int(p.stem.split("-")[1])
        for p in exp.glob("checkpoint-*.pt")
        if p.stem.split("-")[1].isdigit()
    ]
    return max(nums, default=0)


def _timed_reference(cmd: list[str], exp: Path) -> tuple[float, float]:
    """Run to completion; returns (seconds until the first checkpoint appeared, total seconds)."""
    start = time.time()
    proc = subprocess.Popen(
        cmd, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = None
    while proc.poll() is None:
        if first is None and any(exp.glob("checkpoint-*.pt")):
            first = time.time() - start
        time.sleep(0.01)
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{proc.stderr.read().decode()[-3000:]}")
    total = time.time() - start
    return (first or total / 2), total


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", choices=("toy", "pretrain", "finetune"), default="toy")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--signal", choices=("kill", "term"), default="kill",
        help="SIGKILL (a crash) or SIGTERM (pre-emption: the run must stop with a checkpoint, exit 143)",
    )  # fmt: skip
    p.add_argument(
        "--second-writer",
        action="store_true",
        help="before the signal, start the same command again: it must be refused (exit 1)",
    )
    args = p.parse_args()
    sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM}[args.signal]
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # a second writer needs ~2 s to start: give the job time to still be training then
        cmd, final = _commands(args.task, work, step_sleep=0.1 if args.second_writer else 0.02)
        ref = work / "ref"
        first, total = _timed_reference(cmd(ref), ref)
        reference = final(ref)
        reference["epochs"] = max(int(p.stem.split("-")[1]) for p in ref.glob("epoch-*.pt"))
        print(
            f"reference: {reference['batch_idx_train']} batches, first checkpoint after {first:.1f} s, "
            f"done after {total:.1f} s"
        )
        ok = 0
        for trial in range(args.trials):
            exp = work / f"trial-{trial}"
            proc = subprocess.Popen(
                cmd(exp), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            t0 = time.time()
            second = None
            if args.second_writer:  # the same command again while the first holds the exp dir
                # (it must exit 1 at once; if the first ended before it got going, it may train)
                while proc.poll() is None and not (exp / ".lock").exists():
                    time.sleep(0.002)
                second = subprocess.run(cmd(exp), env=ENV, cwd=ROOT, capture_output=True, text=True)
            # kill at a random step (start-up time varies with the load): once checkpoint-<k>.pt (or a
            # later one) exists, after a random 0-60 ms (inside the next step or checkpoint write)
            k = rng.randint(1, reference["batch_idx_train"] - 1)
            while proc.poll() is None and _newest_batch(exp) < k and time.time() - t0 < 300:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.06))
            delay = time.time() - t0
            finished_early = proc.poll() is not None
            proc.send_signal(sig)
            _, err = proc.communicate()
            refused = ""
            if second is not None and not (proc.poll() is not None and second.returncode == 0):
                in_use = second.returncode == 1 and "is in use: training by pid" in second.stderr
                refused = "; second writer refused" if in_use else "; SECOND WRITER NOT REFUSED"
            stopped = ""
            trained = "Done" in err or (exp / f"epoch-{reference['epochs']}.pt").is_file()
            if sig == signal.SIGTERM and not finished_early and not (proc.returncode < 0 and trained):
                clean = proc.returncode == 143 and "Stopped by SIGTERM; saved" in err
                stopped = "; stopped with a checkpoint, exit 143" if clean else "; NOT A CLEAN STOP"
            left = f"newest checkpoint-{_newest_batch(exp)}.pt" if exp.is_dir() else "nothing"
            tmp_files = [p.name for p in exp.glob(".partial-*")] if exp.is_dir() else []
            rerun = subprocess.run(cmd(exp), env=ENV, cwd=ROOT, capture_output=True, text=True)
            same = rerun.returncode == 0 and _identical(reference, final(exp))
            same = same and "NOT" not in refused + stopped
            ok += same
            print(
                f"trial {trial}: {sig.name} after {delay:.2f} s{' (had finished)' if finished_early else ''}"
                f"{stopped}{refused}; k={k}, {left}; mid-write temp files: {tmp_files}; "
                f"resumed -> {'bit-identical' if same else 'DIFFERENT rc=%d' % rerun.returncode}"
            )
        print(f"{ok}/{args.trials} bit-identical ({args.task})")
        sys.exit(0 if ok == args.trials else 1)


if __name__ == "__main__":
    main()
