"""The shell front door: option parsing of run.sh and the stage runner it uses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_help_lists_every_stage() -> None:
    out = _run(["./run.sh", "--help"])
    assert out.returncode == 0
    for name in ["corpus", "manifests", "fbank", "bpe", "pretrain", "finetune", "decode", "export"]:
        assert name in out.stdout


def test_unknown_option_is_rejected_with_its_name() -> None:
    out = _run(["./run.sh", "--no-such-option", "1"])
    assert out.returncode != 0
    assert "unknown option '--no-such-option'" in out.stderr


def test_stage_after_stop_stage_is_rejected() -> None:
    out = _run(["./run.sh", "--stage", "3", "--stop-stage", "1"])
    assert out.returncode != 0
    assert "greater than --stop-stage" in out.stderr


def test_unknown_corpus_is_rejected() -> None:
    out = _run(["./run.sh", "--corpus", "timit", "--dry-run", "true"])
    assert out.returncode != 0
    assert "unknown --corpus 'timit'" in out.stderr


def test_dry_run_selects_exactly_the_requested_stages(tmp_path: Path) -> None:
    out = _run(
        ["./run.sh", "--dry-run", "true", "--stage", "2", "--stop-stage", "3",
         "--exp-dir", str(tmp_path / "exp")]
    )
    assert out.returncode == 0, out.stderr
    assert "stage 2 (fbank): would run" in out.stdout
    assert "stage 3 (bpe): would run" in out.stdout
    for other in ["stage 1 (", "stage 4 ("]:
        assert other not in out.stdout


STAGE_DRIVER = r"""
set -euo pipefail
stage=$1; stop_stage=$2; force=$3; dry_run=false; log_dir=$4
. "{root}/utils/stage_lib.sh"
run_stage 1 one bash -c 'echo output-of-one; echo ran >> "$0/ran-1"' "$log_dir"
run_stage 2 two bash -c 'echo output-of-two; echo ran >> "$0/ran-2"; exit ${{FAIL_TWO:-0}}' "$log_dir"
run_stage 3 three bash -c 'echo ran >> "$0/ran-3"' "$log_dir"
"""


@pytest.fixture()
def driver(tmp_path: Path) -> Path:
    script = tmp_path / "driver.sh"
    script.write_text(STAGE_DRIVER.format(root=ROOT))
    return script


def _count(log_dir: Path, n: int) -> int:
    f = log_dir / f"ran-{n}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_stages_run_in_range_and_log_their_output(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    out = _run(["bash", str(driver), "1", "2", "false", str(log_dir)])
    assert out.returncode == 0, out.stderr
    assert [_count(log_dir, n) for n in (1, 2, 3)] == [1, 1, 0]
    assert "output-of-one" in (log_dir / "stage-1-one.log").read_text()
    assert "output-of-two" in (log_dir / "stage-2-two.log").read_text()
    assert (log_dir / "stage-1-one.done").exists()


def test_finished_stage_is_skipped_and_force_reruns_it(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    _run(["bash", str(driver), "1", "1", "false", str(log_dir)])
    out = _run(["bash", str(driver), "1", "1", "false", str(log_dir)])
    assert "already done, skipping" in out.stdout
    assert _count(log_dir, 1) == 1
    _run(["bash", str(driver), "1", "1", "true", str(log_dir)])
    assert _count(log_dir, 1) == 2


def test_failing_stage_stops_the_run_and_names_its_log(driver: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    out = _run(["bash", str(driver), "1", "3", "false", str(log_dir)], env={"FAIL_TWO": "3"})
    assert out.returncode != 0
    assert "stage 2 (two) failed" in out.stdout
    assert str(log_dir / "stage-2-two.log") in out.stdout
    assert _count(log_dir, 3) == 0
    assert not (log_dir / "stage-2-two.done").exists()


STAGES_DRIVER = r"""
set -euo pipefail
python() {{ echo "python $*"; }}   # print each stage's command instead of running it
data_dir=data; prefix=mini; lang_dir=data/lang_bpe_32; seed=0; train_parts=train-mini
dev_parts=dev-mini; finetune_epochs=3; finetune_max_duration=30; finetune_lr=1e-3
finetune_extra_args="--ctc-loss-scale 0.5"; pretrain_preset=mini
finetune_init_args="$1"
. "{root}/utils/launch.sh"
. "{root}/egs/librispeech/stages.sh"
{commands}
"""


def _stages_driver(tmp_path: Path, commands: str) -> Path:
    script = tmp_path / "stages.sh"
    script.write_text(STAGES_DRIVER.format(root=ROOT, commands=commands))
    return script


def test_finetune_init_args_apply_to_pretrained_encoders_only(tmp_path: Path) -> None:
    script = _stages_driver(
        tmp_path, "_finetune exp/scratch none\n_finetune exp/pre exp/pretrain/epoch-10.pt --seed 7"
    )
    out = _run(["bash", str(script), "--freeze-encoder-steps 300 --encoder-lr-scale 0.5"])
    assert out.returncode == 0, out.stderr
    scratch, pre = out.stdout.splitlines()
    assert "--init-from none --model-preset mini" in scratch
    assert "--freeze-encoder-steps" not in scratch
    assert "--init-from exp/pretrain/epoch-10.pt --freeze-encoder-steps 300 --encoder-lr-scale 0.5" in pre
    assert "--model-preset" not in pre
    assert pre.endswith("--ctc-loss-scale 0.5 --seed 7")
    # no init args: the pre-trained command has nothing extra (no empty argument either)
    out = _run(["bash", str(script), ""])
    assert out.returncode == 0, out.stderr
    assert "--init-from exp/pretrain/epoch-10.pt --bpe-model" in out.stdout.splitlines()[1]


def test_compare_gives_the_w2vbert_feature_run_and_best_rq_their_own_args(tmp_path: Path) -> None:
    script = _stages_driver(
        tmp_path,
        "exp_dir=exp; test_parts=test-mini; pretrain_epochs=10; pretrain_max_duration=25\n"
        "pretrain_lr=2e-3; pretrain_extra_args=; decode_epoch=3; decode_avg=1\n"
        "compare_features_epochs=4; compare_features_w2vbert_args='--diversity-weight 1.0'\n"
        "compare_best_rq_args='--mask-p 0.15 --mask-span-len 4'\n"
        "_compare",
    )
    out = _run(["bash", str(script), "--freeze-encoder-steps 300"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    features = [x for x in lines if "pretrain-features-" in x]
    assert len(features) == 2
    w2v, mlm = features
    assert "--objective w2vbert" in w2v and w2v.endswith("--num-epochs 4 --diversity-weight 1.0")
    assert "--objective mlm" in mlm and "--diversity-weight" not in mlm
    best_rq = [x for x in lines if "pretrain-best-rq" in x and "w2vbert.pretrain" in x]
    assert len(best_rq) == 1 and best_rq[0].endswith("--objective best-rq --mask-p 0.15 --mask-span-len 4")
    assert "--num-epochs 10" in best_rq[0]  # the budget of (b)-(d)
    assert not any("--mask-p" in x for x in lines if x not in best_rq)
    finetunes = [x for x in lines if "w2vbert.finetune" in x]
    assert len(finetunes) == 4  # scratch, contrastive only, MLM only, BEST-RQ
    assert "--freeze-encoder-steps" not in finetunes[0]
    assert all("--freeze-encoder-steps 300" in x for x in finetunes[1:])
    assert "pretrain-best-rq/epoch-10.pt" in finetunes[3]
    decodes = [x for x in lines if "w2vbert.decode" in x]
    assert any("finetune-best-rq" in x for x in decodes)



# stands in for python: prints its command and makes the outputs that run.sh checks (the last
# epoch-N.pt of training, the method directory of decoding, bpe.model)
FAKE_OUTPUTS = r"""
fake_outputs() {
  local module=$2 exp="" epochs="" method=greedy_search lang="" prev=""
  for a in "$@"; do
    case $prev in
      --exp-dir) exp=$a ;; --num-epochs) epochs=$a ;; --decoding-method) method=$a ;;
      --lang-dir) lang=$a ;;
    esac
    prev=$a
  done
  case $module in
    w2vbert.pretrain|w2vbert.finetune) mkdir -p "$exp"; : > "$exp/epoch-$epochs.pt" ;;
    w2vbert.decode) mkdir -p "$exp/$method" ;;
  esac
  if [ -n "$lang" ]; then mkdir -p "$lang"; : > "$lang/bpe.model"; fi
}
"""

FINGERPRINT_DRIVER = r"""
set -euo pipefail
{fake}
python() {{ echo "python $*"; fake_outputs "$@"; }}   # each stage's commands are only printed
stage=4; stop_stage=6; force=false; dry_run=false; log_dir=$1
cd "$(dirname "$log_dir")"
exp_dir=exp; data_dir=data; prefix=tiny; seed=0; bpe_vocab_size=64
train_parts=train-mini; dev_parts=dev-mini; test_parts=test-mini
pretrain_preset=tiny; : "${{pretrain_epochs:=1}}"; pretrain_max_duration=60; pretrain_lr=1e-3
pretrain_extra_args="--warmup-steps 10"; finetune_epochs=2; finetune_max_duration=60
finetune_lr=1e-3; finetune_extra_args="--warmup-steps 10"; finetune_init_args=
decode_epoch=2; : "${{decode_avg:=1}}"; decoding_methods=greedy_search
. "{root}/utils/stage_lib.sh"
. "{root}/utils/launch.sh"
. "{root}/egs/librispeech/stages.sh"
for n in 4 5 6; do run_recipe_stage "$n"; done
"""

STAGES_4_TO_6 = {4: "pretrain", 5: "finetune", 6: "decode"}


def _stages_that_ran(out: subprocess.CompletedProcess) -> dict[int, bool]:
    """{stage: True if it ran, False if it was skipped as done} for stages 4-6 of a run."""
    assert out.returncode == 0, out.stdout + out.stderr
    ran, skipped = {}, {}
    for n, name in STAGES_4_TO_6.items():
        ran[n] = f"stage {n} ({name}): done in" in out.stdout
        skipped[n] = f"stage {n} ({name}): already done, skipping" in out.stdout
        assert ran[n] != skipped[n], out.stdout
    return ran


def test_function_stages_rerun_only_when_their_own_settings_change(tmp_path: Path) -> None:
    script = tmp_path / "fingerprint.sh"
    script.write_text(FINGERPRINT_DRIVER.format(root=ROOT, fake=FAKE_OUTPUTS))
    log_dir = tmp_path / "log"

    def ran(**settings: str) -> dict[int, bool]:
        return _stages_that_ran(_run(["bash", str(script), str(log_dir)], env=settings))

    assert ran() == {4: True, 5: True, 6: True}
    assert ran() == {4: False, 5: False, 6: False}
    # a decoding setting: only stage 6 re-runs
    assert ran(decode_avg="2") == {4: False, 5: False, 6: True}
    assert ran(decode_avg="2") == {4: False, 5: False, 6: False}
    # the pre-training epochs: stage 4 (its setting) and stage 5 (its --init-from epoch-N.pt)
    # a new pre-trained model: it is fine-tuned and decoded again
    assert ran(decode_avg="2", pretrain_epochs="3") == {4: True, 5: True, 6: True}
    assert "--num-epochs 3" in (log_dir / "stage-4-pretrain.log").read_text()


FAKE_PYTHON = r"""#!/usr/bin/env bash
# stands in for python on PATH: prints its command, makes the outputs run.sh checks; as
# w2vbert.report, writes an empty RESULTS.md
echo "python $*"
""" + FAKE_OUTPUTS + r"""
fake_outputs "$@"
if [ "$1 $2" = "-m w2vbert.report" ]; then
  for ((i = 1; i < $#; i++)); do
    j=$((i + 1)); [ "${!i}" = --exp-dir ] && { mkdir -p "${!j}"; : > "${!j}/RESULTS.md"; }
  done
fi
exit 0
"""


def test_run_sh_reruns_only_the_stages_whose_settings_changed(tmp_path: Path) -> None:
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    venv.mkdir()
    (venv / ".w2vbert-setup-done").touch()  # path.sh: use this "environment" as it is
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "W2VBERT_USE_ACTIVE_ENV": "1",
           "VIRTUAL_ENV": str(venv)}  # fmt: skip
    run_sh = ["./run.sh", "--corpus", "tiny", "--stage", "4", "--stop-stage", "6",
              "--exp-dir", str(tmp_path / "exp")]  # fmt: skip

    def ran(*options: str) -> dict[int, bool]:
        return _stages_that_ran(_run(run_sh + list(options), env=env))

    assert ran() == {4: True, 5: True, 6: True}
    assert ran("--decode-avg", "2") == {4: False, 5: False, 6: True}
    assert ran("--decode-avg", "2", "--pretrain-epochs", "3") == {4: True, 5: True, 6: True}
    assert ran("--decode-avg", "2", "--pretrain-epochs", "3", "--finetune-lr", "5e-4") == {
        4: False, 5: True, 6: True,
    }


def test_force_reaches_the_data_scripts_without_changing_their_fingerprint(tmp_path: Path) -> None:
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    venv.mkdir()
    (venv / ".w2vbert-setup-done").touch()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "W2VBERT_USE_ACTIVE_ENV": "1",
           "VIRTUAL_ENV": str(venv)}  # fmt: skip
    run_sh = ["./run.sh", "--corpus", "tiny", "--stage", "0", "--stop-stage", "3",
              "--exp-dir", str(tmp_path / "exp"), "--data-dir", str(tmp_path / "data"),
              "--download-dir", str(tmp_path / "download")]  # fmt: skip
    scripts = ("make_mini_corpus.py", "prepare_manifests.py", "compute_fbank.py", "train_bpe.py")

    def commands(out: subprocess.CompletedProcess) -> list[str]:
        assert out.returncode == 0, out.stdout + out.stderr
        return [line for line in out.stdout.splitlines() if line.startswith("python local/")]

    first = commands(_run(run_sh, env=env))
    assert len(first) == 4 and not any("--force" in c for c in first)
    forced = commands(_run(run_sh + ["--force", "true"], env=env))
    assert [c.split()[1].split("/")[1] for c in forced] == list(scripts)
    assert all(c.endswith(" --force") for c in forced)
    again = _run(run_sh, env=env)  # the same stages, not forced: nothing to do
    assert commands(again) == [] and again.stdout.count("already done, skipping") == 4


SIGNAL_DRIVER = r"""
set -euo pipefail
stage=1; stop_stage=2; force=false; dry_run=false; log_dir=$1
. "{root}/utils/stage_lib.sh"
. "{root}/utils/launch.sh"
run_stage 1 train {python} -c '
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    print("saving a checkpoint", flush=True)
    time.sleep(0.3)
    Path(sys.argv[1], "saved").write_text(str(signum))
    print("saved", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1], "started").touch()
while True:
    time.sleep(0.05)
' "$log_dir"
run_stage 2 after bash -c 'touch "$0/stage-2-ran"' "$log_dir"
"""


def test_sigterm_to_a_stage_run_reaches_the_command_and_leaves_nothing_running(tmp_path: Path):
    import sys
    import time

    log_dir = tmp_path / "log"
    log_dir.mkdir()
    script = tmp_path / "driver.sh"
    script.write_text(SIGNAL_DRIVER.format(root=ROOT, python=sys.executable))
    proc = subprocess.Popen(["bash", str(script), str(log_dir)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (log_dir / "started").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.terminate()  # SIGTERM to the driver only, as a scheduler's first signal
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert (log_dir / "saved").read_text() == "15"  # the command got it and finished its save
    log = (log_dir / "stage-1-train.log").read_text()
    assert "saving a checkpoint" in log and "saved" in log  # tee outlived the command
    assert "stage 1 (train): stopped by signal 15" in out
    assert not (log_dir / "stage-1-train.done").exists() and not (log_dir / "stage-2-ran").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(log_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_a_space_in_the_data_dir_reaches_stage_3_as_one_path(tmp_path: Path) -> None:
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    venv.mkdir()
    (venv / ".w2vbert-setup-done").touch()
    (bin_dir / "python").write_text('#!/usr/bin/env bash\nprintf "arg[%s]\\n" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "W2VBERT_USE_ACTIVE_ENV": "1",
           "VIRTUAL_ENV": str(venv)}  # fmt: skip
    data = tmp_path / "my data"
    out = _run(["./run.sh", "--corpus", "tiny", "--stage", "3", "--stop-stage", "3",
                "--exp-dir", str(tmp_path / "exp"), "--data-dir", str(data)], env=env)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"arg[{data}/fbank/tiny_cuts_train-mini.jsonl.gz]" in out.stdout


def test_pretrain_extra_cuts_join_stage_4s_training_cuts_and_fingerprint(tmp_path: Path) -> None:
    """--pretrain-extra-cuts: another corpus's unlabelled cuts (e.g. AN4 + the mini corpus's)."""
    extra = [str(tmp_path / "other_cuts_unlab.jsonl.gz"), str(tmp_path / "more_cuts.jsonl.gz")]
    args = ["./run.sh", "--dry-run", "true", "--stage", "4", "--stop-stage", "4",
            "--exp-dir", str(tmp_path / "exp")]  # fmt: skip
    out = _run(args + ["--pretrain-extra-cuts", " ".join(extra)])
    assert out.returncode == 0, out.stderr
    cmd = next(line for line in out.stdout.splitlines() if "python -m w2vbert.pretrain" in line)
    assert f"--train-cuts data/fbank/mini_cuts_pretrain.jsonl.gz {extra[0]} {extra[1]} --valid" in cmd
    assert "pretrain_extra_cuts=" in out.stdout  # a changed list re-runs stage 4
    plain = _run(args)
    assert plain.returncode == 0 and "pretrain_extra_cuts=" not in plain.stdout  # old fingerprints
    shar = _run(args + ["--pretrain-extra-cuts", extra[0], "--pretrain-shar", "features"])
    assert "--pretrain-extra-cuts needs --pretrain-shar none" in shar.stdout + shar.stderr
