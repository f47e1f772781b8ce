"""Stages 0-3 end to end through the local/ scripts on a tiny synthetic corpus."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import load_manifest

REPO = Path(__file__).resolve().parents[1]
PARTS = ["dev-mini", "test-mini", "train-mini", "unlab-mini"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None or shutil.which("bible") is None,
        reason="needs the Debian packages espeak-ng, fortunes, bible-kjv",
    ),
]


def run(script: str, *args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "local" / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("stages")
    run(
        "make_mini_corpus.py",
        "--out-dir",
        "download/mini",
        "--tiny",
        "--seed",
        1,
        "--nj",
        2,
        cwd=work,
    )
    run("prepare_manifests.py", "--corpus-dir", "download/mini", "--output-dir", "data/manifests",
        "--prefix", "mini", cwd=work)  # fmt: skip
    run("compute_fbank.py", "--manifest-dir", "data/manifests", "--output-dir", "data/fbank",
        "--prefix", "mini", "--nj", 2, "--speed-perturb", cwd=work)  # fmt: skip
    run("train_bpe.py", "--transcripts", "data/fbank/mini_cuts_train-mini.jsonl.gz",
        "--lang-dir", "data/lang_bpe_30", "--vocab-size", 30, cwd=work)  # fmt: skip
    return work


def test_stages_0_to_3_write_the_documented_files(work, monkeypatch):
    monkeypatch.chdir(work)  # manifests hold paths relative to where the stages ran (as icefall)
    data = work / "data"
    for part in PARTS:
        for kind in ("recordings", "supervisions"):
            assert (data / "manifests" / f"mini_{kind}_{part}.jsonl.gz").is_file()
        assert (data / "fbank" / f"mini_cuts_{part}.jsonl.gz").is_file()
        assert list((data / "fbank" / f"mini_feats_{part}").glob("feats-*.lca"))
    pretrain = load_manifest(data / "fbank" / "mini_cuts_pretrain.jsonl.gz")
    unlab = load_manifest(data / "fbank" / "mini_cuts_unlab-mini.jsonl.gz")
    assert sorted(c.id for c in pretrain) == sorted(c.id for c in unlab)
    train = load_manifest(data / "fbank" / "mini_cuts_train-mini.jsonl.gz")
    assert sum(c.id.endswith(("_sp0.9", "_sp1.1")) for c in train) == 2 * len(train) // 3
    assert all(c.load_features().shape[1] == 80 for c in train)
    lang = data / "lang_bpe_30"
    assert (lang / "bpe.model").is_file()
    assert (lang / "tokens.txt").read_text().splitlines()[:3] == [
        "<blk> 0",
        "<sos/eos> 1",
        "<unk> 2",
    ]
    for log in ("download/log/make_mini_corpus.log", "data/manifests/log/prepare_manifests.log",
                "data/fbank/log/compute_fbank.log", "data/lang_bpe_30/log/train_bpe.log"):  # fmt: skip
        assert (work / log).stat().st_size > 0, log


def _speaker_voices(corpus: Path) -> dict[str, str]:
    rows = (corpus / "SPEAKERS.TXT").read_text().splitlines()[1:]
    return {r.split("|")[0].strip(): r.split("|")[4].split()[0] for r in rows}


def test_test_voices_and_dev_test_sentences_are_absent_from_training_parts(work):
    voice_of = _speaker_voices(work / "download" / "mini")
    sups = {
        p: load_manifest(work / "data" / "manifests" / f"mini_supervisions_{p}.jsonl.gz")
        for p in PARTS
    }
    voices = {p: {voice_of[s.speaker] for s in sups[p]} for p in PARTS}
    training = voices["train-mini"] | voices["unlab-mini"]
    assert voices["test-mini"] and not voices["test-mini"] & (training | voices["dev-mini"])
    assert not voices["dev-mini"] & training
    train_texts = {s.text for s in sups["train-mini"]}
    for part in ("dev-mini", "test-mini"):
        texts = {s.text for s in sups[part]}
        assert texts and not texts & train_texts
        assert all(t == t.upper() and not any(ch.isdigit() for ch in t) for t in texts)


def test_a_rerun_skips_finished_parts(work):
    cuts = work / "data" / "fbank" / "mini_cuts_dev-mini.jsonl.gz"
    stamp = cuts.stat().st_mtime_ns
    proc = run("compute_fbank.py", "--manifest-dir", "data/manifests", "--output-dir",
               "data/fbank", "--prefix", "mini", "--parts", "dev-mini", cwd=work)  # fmt: skip
    assert "exists, skipping" in proc.stderr and cuts.stat().st_mtime_ns == stamp


def test_bad_input_exits_1_with_a_one_line_error_naming_the_file(work, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(work / "download" / "mini" / "dev-mini", corpus / "dev-mini")
    victim = sorted((corpus / "dev-mini").rglob("*.flac"))[0]
    victim.unlink()
    proc = run("prepare_manifests.py", "--corpus-dir", corpus, "--output-dir", tmp_path / "m",
               "--prefix", "mini", cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert f"has no audio file {victim}" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "m").glob("*.jsonl.gz"))


@pytest.mark.parametrize(
    "script",
    ["make_mini_corpus.py", "download_librispeech.py", "prepare_manifests.py",
     "compute_fbank.py", "train_bpe.py"],
)  # fmt: skip
def test_every_stage_script_has_help(script, tmp_path):
    proc = run(script, "--help", cwd=tmp_path)
    assert proc.stdout.startswith("usage:") and "--log-file" in proc.stdout


def test_download_script_links_an_existing_copy_without_downloading(tmp_path):
    existing = tmp_path / "MyLibriSpeech"
    for part in ("dev-clean", "test-clean"):
        (existing / part).mkdir(parents=True)
    args = [
        "--target-dir",
        tmp_path / "dl",
        "--existing",
        existing,
        "--parts",
        "dev-clean",
        "test-clean",
    ]
    run("download_librispeech.py", *args, cwd=tmp_path)
    assert (tmp_path / "dl" / "LibriSpeech").resolve() == existing.resolve()
    run("download_librispeech.py", *args, cwd=tmp_path)  # idempotent
    proc = run("download_librispeech.py", "--target-dir", tmp_path / "dl2", "--existing", existing,
               "--parts", "train-clean-100", cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1 and "lacks the part(s) train-clean-100" in proc.stderr
