"""The LibriSpeech 100 h / 960 h and Libri-Light configurations of run.sh on simulated trees."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from data_fixtures import make_librilight_tree, make_librispeech_tree
from lhotse import load_manifest

ROOT = Path(__file__).resolve().parents[1]
LS_960 = ["train-clean-100", "train-clean-360", "train-other-500"]
EVAL = ["dev-clean", "dev-other", "test-clean", "test-other"]
# tiny budgets (the tiny conf's) so that stages 4-7 take seconds on a few 3-s utterances
TINY = ["--bpe-vocab-size", "30", "--pretrain-preset", "tiny", "--pretrain-epochs", "1",
        "--pretrain-max-duration", "60", "--pretrain-lr", "1e-3", "--finetune-epochs", "2",
        "--finetune-max-duration", "60", "--finetune-lr", "1e-3", "--decode-avg", "1",
        "--pretrain-extra-args", "--warmup-steps 10 --log-interval 5 --num-buckets 2",
        "--finetune-extra-args", "--warmup-steps 10 --log-interval 5 --num-buckets 2",
        "--finetune-init-args", "--freeze-encoder-steps 2",
        "--decoding-methods", "greedy_search"]  # fmt: skip (beam search: tested elsewhere)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a LibriSpeech tree with all seven parts, a Libri-Light tree with "small")."""
    root = tmp_path_factory.mktemp("corpora")
    make_librispeech_tree(root / "LibriSpeech")
    make_librilight_tree(root / "LibriLight", ("small",), num_speakers=2, minutes=2.0)
    return root / "LibriSpeech", root / "LibriLight"


def _run_sh(tmp: Path, *options: str) -> subprocess.CompletedProcess:
    args = ["./run.sh", "--exp-dir", str(tmp / "exp"), "--data-dir", str(tmp / "data"),
            "--download-dir", str(tmp / "download"), *options]  # fmt: skip
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))


def _commands(out: subprocess.CompletedProcess) -> dict[int, str]:
    """{stage: the command it would run} of a dry run (for a function stage: its python lines)."""
    assert out.returncode == 0, out.stdout + out.stderr
    commands: dict[int, str] = {}
    current = None
    for line in out.stdout.splitlines():
        m = re.search(r"stage (\d+) \(\w+\): would run: (.*)", line)
        if m:
            current = int(m.group(1))
            commands[current] = m.group(2)
        elif line.startswith(("    python", "    torchrun", "    srun")) and current is not None:
            if commands[current].startswith("_"):  # the function line: replaced by what it runs
                commands[current] = ""
            commands[current] += line.strip() + "\n"
    return commands


def _flag(command: str, flag: str) -> list[str]:
    """The values after ``flag`` up to the next flag."""
    words = command.split()
    values = words[words.index(flag) + 1 :]
    return values[: next((i for i, w in enumerate(values) if w.startswith("--")), len(values))]


@pytest.mark.parametrize(
    "corpus, options, finetune_parts, pretrain_parts, librilight",
    [
        ("librispeech", [], ["train-clean-100"], LS_960, []),
        ("librispeech-960", [], LS_960, LS_960, []),
        ("librilight", ["--librilight-subset", "all"], LS_960, ["small", "medium", "large"],
         ["small", "medium", "large"]),
        ("librilight", [], LS_960, ["small"], ["small"]),
    ],
)  # fmt: skip
def test_dry_run_shows_the_parts_each_configuration_downloads_pretrains_and_finetunes_on(
    tmp_path, trees, corpus, options, finetune_parts, pretrain_parts, librilight
):
    librispeech, libri_light = trees
    links = ["--librispeech-dir", str(librispeech)]
    if librilight:
        links += ["--librilight-dir", str(libri_light)]
    cmd = _commands(_run_sh(tmp_path, "--dry-run", "true", "--corpus", corpus, *links, *options))
    prefix = "librilight" if librilight else "librispeech"
    # stage 0: every LibriSpeech part used (pre-training's too), and the Libri-Light subsets
    assert sorted(_flag(cmd[0], "--parts")) == sorted(LS_960 + EVAL)
    assert _flag(cmd[0], "--existing") == [str(librispeech)]
    if librilight:
        assert _flag(cmd[0], "--librilight") == librilight
        assert _flag(cmd[0], "--existing-librilight") == [str(libri_light)]
        assert _flag(cmd[1], "--max-cut-duration") == ["30"]
        assert _flag(cmd[1], "--corpus-dir")[1] == str(tmp_path / "download/LibriLight")
    else:
        assert "--librilight" not in cmd[0] and "--max-cut-duration" not in cmd[1]
    assert sorted(_flag(cmd[1], "--parts")) == sorted(LS_960 + EVAL + librilight)
    # stage 2: the pre-training parts; only the fine-tuning parts are speed-perturbed
    assert _flag(cmd[2], "--pretrain-parts") == pretrain_parts
    assert _flag(cmd[2], "--train-parts") == finetune_parts
    # stage 3 (BPE) and stage 5 (fine-tuning) on the same parts, all of them in one run
    fbank = tmp_path / "data" / "fbank"
    cuts = [str(fbank / f"{prefix}_cuts_{p}.jsonl.gz") for p in finetune_parts]
    assert _flag(cmd[3], "--transcripts") == cuts
    several = len(finetune_parts) > 1  # then one shuffled union of them (stage 2 --train-union)
    assert ("--train-union" in cmd[2].split()) == several
    union = [str(fbank / f"{prefix}_cuts_train.jsonl.gz")] if several else cuts
    assert cmd[5].count("w2vbert.finetune") == 1 and _flag(cmd[5], "--train-cuts") == union
    if librilight:  # pre-training from Shar shards that stage 2 writes
        shar = str(fbank / f"{prefix}_shar_pretrain")
        assert _flag(cmd[2], "--shar-dir") == [shar] and _flag(cmd[2], "--shar-fields") == ["features"]
        assert _flag(cmd[4], "--train-cuts") == [shar]
    else:
        assert "--shar-dir" not in cmd[2]
        assert _flag(cmd[4], "--train-cuts") == [str(fbank / f"{prefix}_cuts_pretrain.jsonl.gz")]


def test_options_that_do_not_fit_the_configuration_are_refused(tmp_path):
    dry = ["--dry-run", "true", "--corpus"]
    out = _run_sh(tmp_path, *dry, "librispeech", "--full-librispeech", "true")
    assert out.returncode == 2 and "use --corpus librispeech-960" in out.stderr
    out = _run_sh(tmp_path, *dry, "librispeech-960", "--librilight-subset", "small")
    assert out.returncode == 2
    assert "are for --corpus librilight, not 'librispeech-960'" in out.stderr
    for bad in ("45", "0", "ten"):
        out = _run_sh(tmp_path, *dry, "librilight", "--librilight-max-cut-duration", bad)
        assert out.returncode == 2 and f"in (0, 30], got '{bad}'" in out.stderr
    out = _run_sh(tmp_path, *dry, "librilight", "--librilight-subset", "huge")
    assert out.returncode == 2 and "unknown --librilight-subset 'huge'" in out.stderr


@pytest.mark.parametrize(
    "corpus, finetune_parts",
    [("librispeech", LS_960[:1]), ("librispeech-960", LS_960)],
)
def test_librispeech_configurations_run_on_a_simulated_tree(
    tmp_path, trees, corpus, finetune_parts
):
    out = _run_sh(tmp_path, "--corpus", corpus, "--librispeech-dir", str(trees[0]), *TINY,
                  "--stop-stage", "7")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "download" / "LibriSpeech").resolve() == trees[0].resolve()
    fbank = tmp_path / "data" / "fbank"
    for part in LS_960:  # 3 utterances each; speed-perturbed copies for fine-tuning parts only
        cuts = load_manifest(fbank / f"librispeech_cuts_{part}.jsonl.gz")
        assert len(cuts) == (9 if part in finetune_parts else 3)
    for part in EVAL:
        assert len(load_manifest(fbank / f"librispeech_cuts_{part}.jsonl.gz")) == 3
    pretrain = load_manifest(fbank / "librispeech_cuts_pretrain.jsonl.gz")
    assert {c.id.split("-")[0] for c in pretrain} == {"100", "101", "102"}  # the three train parts
    bpe_log = (tmp_path / "exp" / "log" / "stage-3-bpe.log").read_text()
    assert f"from {3 * len(finetune_parts)} transcripts" in bpe_log  # BPE on the fine-tuning parts
    log = (tmp_path / "exp" / "log" / "stage-5-finetune.log").read_text()
    if len(finetune_parts) > 1:
        union = load_manifest(fbank / "librispeech_cuts_train.jsonl.gz")  # what stage 5 trained on
        assert len(union) == 27 and {c.id.split("-")[0] for c in union} == {"100", "101", "102"}
        assert "--train-cuts " + str(fbank / "librispeech_cuts_train.jsonl.gz") in log  # 3 x 3 x 3 sp
    else:
        assert not (fbank / "librispeech_cuts_train.jsonl.gz").exists()
        assert "--train-cuts " + str(fbank / "librispeech_cuts_train-clean-100.jsonl.gz") in log
    for stage in range(8):  # every stage ran
        assert list((tmp_path / "exp" / "log").glob(f"stage-{stage}-*.done")), stage
    assert list((tmp_path / "exp" / "finetune").glob("encoder*.onnx"))  # stage 7 exported


def test_librilight_stages_0_to_4_pretrain_on_joined_vad_segments(tmp_path, trees):
    librispeech, libri_light = trees
    out = _run_sh(tmp_path, "--corpus", "librilight", "--librispeech-dir", str(librispeech),
                  "--librilight-dir", str(libri_light), "--librilight-max-cut-duration", "20",
                  *TINY, "--stage", "0", "--stop-stage", "4")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "download" / "LibriLight").resolve() == libri_light.resolve()
    sups = load_manifest(tmp_path / "data/manifests/librilight_supervisions_small.jsonl.gz")
    assert all(s.duration <= 20.0 and s.custom == {"max_cut_duration": 20.0} for s in sups)
    pretrain = load_manifest(tmp_path / "data/fbank/librilight_cuts_pretrain.jsonl.gz")
    assert sorted(c.id for c in pretrain) == sorted(s.id for s in sups)  # none dropped
    assert max(c.duration for c in pretrain) > 15.0  # joined, not raw VAD segments (<= 9 s)
    assert (tmp_path / "data/fbank/librilight_cuts_train-other-500.jsonl.gz").is_file()
    log = (tmp_path / "exp" / "log" / "stage-4-pretrain.log").read_text()
    assert f"kept {len(sups)}/{len(sups)} cuts" in log  # pre-trained on every joined segment
    assert (tmp_path / "exp" / "pretrain" / "epoch-1.pt").is_file()


def test_the_paper_configuration_pretrains_xl_for_400k_updates_of_a_global_batch(tmp_path, trees):
    librispeech, libri_light = trees
    out = _run_sh(tmp_path, "--dry-run", "true", "--corpus", "librilight-paper",
                  "--librispeech-dir", str(librispeech), "--librilight-dir", str(libri_light),
                  "--launcher", "torchrun", "--num-gpus", "8")  # fmt: skip
    cmd = _commands(out)
    assert _flag(cmd[0], "--librilight") == ["small", "medium", "large"]  # all 60k h
    pretrain = cmd[4]
    assert pretrain.startswith("torchrun --standalone --nproc-per-node 8 --shutdown-timeout 600 -m w2vbert.pretrain")
    for flag, value in [("--model-preset", "xl"), ("--base-lr", "2e-3"), ("--warmup-steps", "25000"),
                        ("--global-batch-duration", "30720"), ("--max-steps", "400000"),
                        ("--max-duration", "1440"), ("--world-size", "8")]:  # fmt: skip
        assert _flag(pretrain, flag) == [value], flag
    assert _flag(pretrain, "--train-cuts") == [str(tmp_path / "data/fbank/librilight_shar_pretrain")]
