"""Issue 25 in run.sh (utils/stage_lib.sh, egs/librispeech/stages.sh): a stage's fingerprint holds
the identity of its inputs (a re-made pre-trained model, BPE model or cuts re-runs it, even at
the same path); a .done whose outputs are missing is not done (case 4); a second run of a running
stage stops before it touches the stage's log (case 6: tee truncated the first run's log)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from test_run_sh import FAKE_OUTPUTS, FINGERPRINT_DRIVER, ROOT, _run, _stages_that_ran

DRIVER = r"""
set -euo pipefail
stage=1; stop_stage=2; force=false; dry_run=false; log_dir=$1; work=$2
. "{root}/utils/stage_lib.sh"
stage_inputs="$work/in.txt" stage_outputs="$work/out.txt" \
  run_stage 1 make bash -c 'echo started; cp "$0/in.txt" "$0/out.txt"; echo ran >> "$0/ran-1"
    while [ -e "$0/hold" ]; do sleep 0.05; done; echo finished' "$work"
run_stage 2 after bash -c 'echo ran >> "$0/ran-2"' "$work"
"""


def _setup(tmp_path: Path) -> tuple[list[str], Path, Path]:
    script, work, log_dir = tmp_path / "driver.sh", tmp_path / "work", tmp_path / "log"
    script.write_text(DRIVER.format(root=ROOT))
    work.mkdir()
    (work / "in.txt").write_text("pieces of the first BPE model\n")
    return ["bash", str(script), str(log_dir), str(work)], work, log_dir


def _runs(work: Path, n: int) -> int:
    f = work / f"ran-{n}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_a_done_stage_whose_output_is_missing_runs_again_and_so_do_later_ones(tmp_path):
    cmd, work, _ = _setup(tmp_path)
    assert _run(cmd).returncode == 0
    assert "already done, skipping" in _run(cmd).stdout  # outputs there: done
    (work / "out.txt").unlink()
    out = _run(cmd)
    assert out.returncode == 0, out.stderr
    missing = work / "out.txt"
    said = f"stage 1 (make): marked done, but its output {missing} is missing: running it again"
    assert said in out.stdout
    assert (_runs(work, 1), _runs(work, 2)) == (2, 2)


def test_a_changed_input_at_the_same_path_reruns_the_stage_an_identical_rewrite_does_not(tmp_path):
    cmd, work, _ = _setup(tmp_path)
    _run(cmd)
    (work / "in.txt").write_text("pieces of the first BPE model\n")  # re-made, same content
    assert "stage 1 (make): already done" in _run(cmd).stdout
    (work / "in.txt").write_text("pieces of a re-trained BPE model\n")
    out = _run(cmd)
    assert out.returncode == 0 and "stage 1 (make): done in" in out.stdout
    assert (_runs(work, 1), _runs(work, 2)) == (2, 2)
    assert (work / "out.txt").read_text() == "pieces of a re-trained BPE model\n"


def test_a_second_run_of_a_running_stage_stops_before_it_touches_its_log(tmp_path):
    cmd, work, log_dir = _setup(tmp_path)
    (work / "hold").touch()
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = log_dir / "stage-1-make.log"
    for _ in range(400):
        if log.exists() and "started" in log.read_text():
            break
        time.sleep(0.05)
    before = log.read_bytes()
    try:
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:  # it ran the stage (waiting on "hold") instead of stopping
        (work / "hold").unlink()
        first.communicate(timeout=60)
        raise
    assert second.returncode == 1, second.stdout
    refused = f"ERROR: stage 1 (make) is running in another ./run.sh (pid {first.pid}); its log"
    assert f"{refused} {log} is left as it is" in second.stdout
    (work / "hold").unlink()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    text = log.read_bytes()
    assert text.startswith(before) and b"\0" not in text and text.endswith(b"finished\n")
    assert (log_dir / "stage-1-make.done").exists() and _runs(work, 1) == 1


def test_run_sh_stages_rerun_for_a_remade_model_or_bpe_and_for_a_deleted_exp_dir(tmp_path):
    # stages 4-6 of run.sh as their commands are built (python only prints, and makes the
    # files a stage is checked for)
    script = tmp_path / "fingerprint.sh"
    script.write_text(FINGERPRINT_DRIVER.format(root=ROOT, fake=FAKE_OUTPUTS))
    log_dir = tmp_path / "log"

    def ran() -> dict[int, bool]:
        return _stages_that_ran(_run(["bash", str(script), str(log_dir)]))

    assert ran() == {4: True, 5: True, 6: True}
    lang = tmp_path / "data" / "lang_bpe_64"
    lang.mkdir(parents=True)
    (lang / "bpe.model").write_bytes(b"a re-trained BPE model of the same size")
    assert ran() == {4: False, 5: True, 6: True}  # case 1
    (tmp_path / "exp" / "pretrain" / "epoch-1.pt").write_bytes(b"a new pre-trained model")
    assert ran() == {4: False, 5: True, 6: True}  # case 2: the same path, other weights
    assert ran() == {4: False, 5: False, 6: False}
    shutil.rmtree(tmp_path / "exp" / "finetune")
    assert ran() == {4: False, 5: True, 6: True}  # case 4
