"""Issue 9, stage idempotency: each data stage script (stages 0-3) killed with SIGKILL half-way
and re-run gives the same outputs as a clean run, and does not redo what was finished.

The script runs in a subprocess whose chosen function, after its n-th call, touches a marker
file and sleeps; the test then sends SIGKILL, so the kill lands at a known point (mid-way through
the features of the second part, between the two manifest renames, ...) however loaded the
machine is. Training stages (4, 5): tests/test_training_resume.py.
"""

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import make_librispeech_part
from lhotse import load_manifest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120

# Runs local/<script> after wrapping module:attr so that its n-th call pauses for the kill.
PAUSE_AT_CALL = r"""
import importlib, runpy, sys, time
script, target, nth, marker, *args = sys.argv[1:]
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*parents, name = attr.split(".")
for parent in parents:
    owner = getattr(owner, parent)
real, calls = getattr(owner, name), [0]
def paused(*a, **k):
    out = real(*a, **k)
    calls[0] += 1
    if calls[0] == int(nth):
        open(marker, "w").close()
        time.sleep(600)
    return out
setattr(owner, name, paused)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(script: str, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "local" / script), *map(str, args)],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _run_killed(tmp: Path, script: str, target: str, nth: int, *args) -> None:
    """Runs the script until the n-th call of ``target`` returns, then SIGKILLs it."""
    marker = tmp / f"paused-{script}"
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AT_CALL, str(REPO / "local" / script), target, str(nth),
         str(marker), *map(str, args)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{script} ended before the kill point:\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{script} did not reach the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _jsonl(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


@pytest.fixture()
def corpus(tmp_path):
    for part in ("dev-x", "train-x"):
        make_librispeech_part(tmp_path / "corpus", part)
    return tmp_path / "corpus"


@pytest.mark.slow
def test_stage_1_killed_between_its_two_renames_reruns_to_the_clean_output(tmp_path, corpus):
    args = ["--corpus-dir", corpus, "--prefix", "toy", "--output-dir"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # os.replace calls: dev-x recordings, dev-x supervisions, train-x recordings -> kill.
    _run_killed(tmp_path, "prepare_manifests.py", "os:replace", 3, *args, killed)
    assert (killed / "toy_supervisions_dev-x.jsonl.gz").is_file()
    assert (killed / "toy_recordings_train-x.jsonl.gz").is_file()
    assert not (killed / "toy_supervisions_train-x.jsonl.gz").exists()  # not finished-looking
    stamp = (killed / "toy_recordings_dev-x.jsonl.gz").stat().st_mtime_ns
    rerun = _run("prepare_manifests.py", *args, killed)
    assert "Part dev-x:" in rerun.stderr and "exist, skipping" in rerun.stderr
    assert (killed / "toy_recordings_dev-x.jsonl.gz").stat().st_mtime_ns == stamp
    _run("prepare_manifests.py", *args, clean)
    names = sorted(p.name for p in clean.glob("*.jsonl.gz"))
    assert len(names) == 4 and names == sorted(p.name for p in killed.glob("*.jsonl.gz"))
    assert not list(killed.glob(".partial*"))  # the killed writer's temp file is gone
    assert all(_jsonl(killed / n) == _jsonl(clean / n) for n in names)


@pytest.mark.slow
def test_stage_2_killed_while_storing_features_reruns_to_the_clean_cuts_and_features(
    tmp_path, corpus
):
    _run("prepare_manifests.py", "--corpus-dir", corpus, "--prefix", "toy",
         "--output-dir", tmp_path / "m")  # fmt: skip
    args = ["--manifest-dir", tmp_path / "m", "--prefix", "toy", "--nj", 1, "--output-dir"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # dev-x's 3 cuts, then the 2nd of train-x's: killed with train-x's features half-written.
    target = "lhotse.features.io:LilcomChunkyWriter.write"
    _run_killed(tmp_path, "compute_fbank.py", target, 5, *args, killed)
    assert (killed / "toy_cuts_dev-x.jsonl.gz").is_file()
    assert (killed / "toy_feats_train-x" / "feats-0-of-1.lca").is_file()
    assert not (killed / "toy_cuts_train-x.jsonl.gz").exists()
    stamp = (killed / "toy_cuts_dev-x.jsonl.gz").stat().st_mtime_ns
    rerun = _run("compute_fbank.py", *args, killed)
    assert "Part dev-x: " in rerun.stderr and "exists, skipping" in rerun.stderr
    assert "removing features of an unfinished or forced run" in rerun.stderr
    assert (killed / "toy_cuts_dev-x.jsonl.gz").stat().st_mtime_ns == stamp
    assert not list(killed.glob(".partial*"))
    _run("compute_fbank.py", *args, clean)
    for part in ("dev-x", "train-x"):
        a = load_manifest(killed / f"toy_cuts_{part}.jsonl.gz")
        b = load_manifest(clean / f"toy_cuts_{part}.jsonl.gz")
        assert [c.id for c in a] == [c.id for c in b] and len(a) == 3
        for ca, cb in zip(a, b):
            assert ca.duration == cb.duration and ca.supervisions == cb.supervisions
            assert np.array_equal(ca.load_features(), cb.load_features())  # within 0


def _bpe_without_paths(path: Path) -> bytes:
    """The serialised model with the two paths it records (input, model prefix) blanked."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(path.read_bytes())
    del model.trainer_spec.input[:]
    model.trainer_spec.model_prefix = ""
    return model.SerializeToString()


@pytest.mark.slow
def test_stage_3_killed_between_tokens_and_model_reruns_to_the_clean_model(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"THE {w} SAW A {w} AND {w}S" for w in
                              ["CAT", "DOG", "BIRD", "HORSE", "FISH", "MOUSE"] * 10) + "\n")  # fmt: skip
    args = ["--text", text, "--vocab-size", 25, "--lang-dir"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # os.replace calls: transcript_words.txt, tokens.txt -> kill before bpe.model.
    _run_killed(tmp_path, "train_bpe.py", "os:replace", 2, *args, killed)
    assert (killed / "tokens.txt").is_file() and not (killed / "bpe.model").exists()
    assert list(killed.glob(".partial-*.unigram.model"))
    _run("train_bpe.py", *args, killed)
    assert not list(killed.glob(".partial*"))
    _run("train_bpe.py", *args, clean)
    assert (killed / "tokens.txt").read_text() == (clean / "tokens.txt").read_text()
    assert _bpe_without_paths(killed / "bpe.model") == _bpe_without_paths(clean / "bpe.model")
    stamp = (killed / "bpe.model").stat().st_mtime_ns
    assert "exists, skipping" in _run("train_bpe.py", *args, killed).stderr
    assert (killed / "bpe.model").stat().st_mtime_ns == stamp


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("bible") is None,
    reason="needs the Debian packages espeak-ng, fortunes, bible-kjv",
)
def test_stage_0_killed_mid_synthesis_reruns_to_the_clean_corpus(tmp_path):
    args = ["--tiny", "--seed", 2, "--nj", 1, "--out-dir"]
    killed, clean = tmp_path / "k" / "mini", tmp_path / "c" / "mini"
    _run_killed(tmp_path, "make_mini_corpus.py", "w2vbert.prep.mini_corpus:synthesize_file", 3,
                *args, killed)  # fmt: skip
    assert not killed.exists() and (killed.parent / ".mini.partial").is_dir()
    _run("make_mini_corpus.py", *args, killed)
    _run("make_mini_corpus.py", *args, clean)
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert len(files) > 10
    assert files == sorted(p.relative_to(killed) for p in killed.rglob("*") if p.is_file())
    for rel in files:
        assert (killed / rel).read_bytes() == (clean / rel).read_bytes(), rel
    assert not (killed.parent / ".mini.partial").exists()
    stamp = (killed / "corpus_info.json").stat().st_mtime_ns
    assert "already holds this corpus" in _run("make_mini_corpus.py", *args, killed).stderr
    assert (killed / "corpus_info.json").stat().st_mtime_ns == stamp
