"""CMU AN4 (--corpus an4): reading its big-endian audio and transcripts, the manifests and splits
of prepare_an4, the errors on bad input, and stages 0-7 of run.sh on a simulated tree."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from an4_tree import TEST_SPEAKERS, TRAIN_SPEAKERS, make_an4_tree, pack
from lhotse import load_manifest

from w2vbert.prep.an4_layout import parse_transcription_line, read_raw, write_raw
from w2vbert.prep.an4_manifests import choose_speakers, prepare_an4
from w2vbert.prep.corpus_problems import CorpusError

ROOT = Path(__file__).resolve().parents[1]


def test_a_known_signal_written_big_endian_reads_back_exactly(tmp_path):
    values = [0, 1, -1, 255, 256, -256, 12345, -12345, 32767, -32768]
    path = tmp_path / "x.raw"
    path.write_bytes(b"".join(struct.pack(">h", v) for v in values))  # independent writer
    samples = read_raw(path)
    assert samples.dtype == np.int16 and samples.tolist() == values
    write_raw(tmp_path / "y.raw", samples)  # and our writer is its inverse
    assert (tmp_path / "y.raw").read_bytes() == path.read_bytes()


def test_raw_audio_of_an_odd_byte_count_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "odd.raw").write_bytes(b"\x00\x01\x02")
    with pytest.raises(CorpusError, match=r"odd\.raw: 3 bytes"):
        read_raw(tmp_path / "odd.raw")


def test_both_transcript_forms_are_stripped_of_markers_and_ids():
    assert parse_transcription_line("<s> RUBOUT G M E F THREE NINE </s> (an406-fcaw-b)\n", "f:1") == (
        "an406-fcaw-b", "RUBOUT G M E F THREE NINE")  # fmt: skip
    assert parse_transcription_line("ERASE C Q Q F SEVEN (an407-fcaw-b)", "f:2") == (
        "an407-fcaw-b", "ERASE C Q Q F SEVEN")  # fmt: skip
    for bad in ["<s> YES (an1-fash-b)", "yes (an1-fash-b)", "<s> YES </s>", "<s> </s> (an1-fash-b)"]:
        with pytest.raises(CorpusError, match="f:7: expected"):
            parse_transcription_line(bad, "f:7")


def test_choose_speakers_takes_whole_speakers_adding_up_to_the_target():
    counts = {"a": 5, "b": 3, "c": 4, "d": 2}
    assert choose_speakers(counts, 7, sorted(counts)) == ["a", "d"]  # the earliest exact subset
    assert sum(counts[s] for s in choose_speakers(counts, 9, ["d", "c", "b", "a"])) == 9
    assert choose_speakers(counts, 1, sorted(counts)) == ["d"]  # none exact: the nearest total


@pytest.fixture()
def tree(tmp_path) -> tuple[Path, dict]:
    return tmp_path / "an4", make_an4_tree(tmp_path)


def test_prepare_an4_writes_train_dev_test_and_the_few_label_subset(tmp_path, tree):
    an4, utts = tree
    out = prepare_an4(an4, tmp_path / "manifests", audio_dir=tmp_path / "flac", num_dev=4)
    n_train = sum(TRAIN_SPEAKERS.values())
    sups = {part: load_manifest(tmp_path / "manifests" / f"an4_supervisions_{part}.jsonl.gz")
            for part in ("train", "dev", "test", "train-1of8")}  # fmt: skip
    assert len(sups["dev"]) == 4 and len(sups["train"]) == n_train - 4
    assert len(sups["test"]) == sum(TEST_SPEAKERS.values())
    speakers = {part: {s.speaker for s in sup} for part, sup in sups.items()}
    assert not speakers["dev"] & speakers["train"]  # whole speakers
    assert speakers["test"] == set(TEST_SPEAKERS)
    assert speakers["train-1of8"] <= speakers["train"]
    assert len(sups["train-1of8"]) == 3  # round(15 / 8) = 2: the nearest whole speaker has 3
    for part, sup in sups.items():
        for s in sup:
            assert s.text == utts[s.id][0], part  # markers and "(id)" stripped
    recs = out["test"]["recordings"]
    for rec in recs:  # the FLAC copy holds exactly the raw samples, read through Lhotse
        samples = rec.load_audio()[0]
        assert np.array_equal(np.round(samples * 32768).astype(np.int16), read_raw(utts[rec.id][1]))
        assert rec.num_samples == len(samples) and rec.sampling_rate == 16000


@pytest.mark.parametrize(
    "damage, message",
    [
        ("line", r"an4_train\.transcription:2: expected '<s> WORDS </s> \(utterance-id\)'"),
        ("audio", r"an4_train\.fileids:2: missing audio file .*an101-fabc-b\.raw"),
        ("fileid", r"an4_test\.transcription:1: utterance id an119-fxyz-b has no audio"),
        ("extra", r"an999-fabc-b\.raw: audio file without a line in an4_train\.fileids"),
    ],
)
def test_bad_input_is_an_error_naming_the_file_and_line(tmp_path, tree, damage, message):
    an4, utts = tree
    etc = an4 / "etc"
    if damage == "line":  # a malformed transcript line
        lines = (etc / "an4_train.transcription").read_text().splitlines()
        lines[1] = lines[1].replace("</s> ", "")
        (etc / "an4_train.transcription").write_text("\n".join(lines) + "\n")
    elif damage == "audio":  # a missing audio file
        utts["an101-fabc-b"][1].unlink()
    elif damage == "fileid":  # an utterance id without audio (not in the file list)
        lines = (etc / "an4_test.fileids").read_text().splitlines()
        (etc / "an4_test.fileids").write_text("\n".join(lines[1:]) + "\n")
        utts["an119-fxyz-b"][1].unlink()
    else:  # audio without a transcript
        write_raw(an4 / "wav/an4_clstk/fabc/an999-fabc-b.raw", np.zeros(100, dtype=np.int16))
    with pytest.raises(CorpusError, match=message):
        prepare_an4(an4, tmp_path / "manifests", num_dev=4)
    assert not (tmp_path / "manifests").exists()  # nothing written


def _run_sh(tmp: Path, *options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    args = ["./run.sh", "--exp-dir", str(tmp / "exp"), "--data-dir", str(tmp / "data"),
            "--download-dir", str(tmp / "download"), *options]  # fmt: skip
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_an4_options_are_refused_elsewhere_and_checked(tmp_path):
    out = _run_sh(tmp_path, "--dry-run", "true", "--an4-dir", str(tmp_path))
    assert out.returncode == 2 and "are for --corpus an4, not 'mini'" in out.stderr
    out = _run_sh(tmp_path, "--dry-run", "true", "--corpus", "an4", "--an4-train-part", "dev")
    assert out.returncode == 2 and "unknown --an4-train-part 'dev'" in out.stderr
    out = _run_sh(tmp_path, "--dry-run", "true", "--corpus", "an4", "--an4-train-part", "train-1of8")
    assert out.returncode == 0, out.stderr
    assert "--train-cuts " + str(tmp_path / "data/fbank/an4_cuts_train-1of8.jsonl.gz") in out.stdout
    # few labels: smaller batches, more epochs (12 epochs of 30 s were fewer updates than the
    # warm-up); all labels keep the timed configuration
    assert "--num-epochs 40 --max-duration 10 " in out.stdout
    out = _run_sh(tmp_path, "--dry-run", "true", "--corpus", "an4")
    assert "--num-epochs 12 --max-duration 30 " in out.stdout



def test_the_long_an4_configuration_pretrains_longer_in_its_own_exp_dir(tmp_path):
    out = _run_sh(tmp_path, "--dry-run", "true", "--corpus", "an4-long", "--stage", "4")
    assert out.returncode == 0, out.stderr
    assert "--model-preset mini" in out.stdout and "--num-epochs 40 " in out.stdout
    assert "--num-epochs 12 " in out.stdout and "--beam-size 10 " in out.stdout
    # the same data as --corpus an4 (prefix an4), its experiments apart from the short run's
    assert str(tmp_path / "data/fbank/an4_cuts_train.jsonl.gz") in out.stdout
    exp_long = ROOT / "exp-long"
    existed = exp_long.exists()
    try:
        out = subprocess.run(["./run.sh", "--dry-run", "true", "--corpus", "an4-long", "--data-dir",
                              str(tmp_path / "data"), "--stage", "4", "--stop-stage", "4"],
                             cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 0 and "--exp-dir exp-long/pretrain" in out.stdout, out.stderr
    finally:
        if not existed:
            subprocess.run(["rm", "-rf", str(exp_long)])


def test_the_an4_configuration_runs_stages_0_to_7_on_a_simulated_archive(tmp_path):
    from test_corpus_configs import TINY

    utts = make_an4_tree(tmp_path / "src")
    archive = pack(tmp_path / "src", tmp_path / "an4_raw.bigendian.tar.gz")
    out = _run_sh(tmp_path, "--corpus", "an4", "--an4-archive", str(archive), *TINY,
                  "--bpe-vocab-size", "20",  # sentencepiece: at most 20 for 15 transcripts
                  env={"an4_dev_utterances": "4"})  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "download/an4/etc/an4_train.fileids").is_file()  # stage 0 unpacked it
    flac = tmp_path / "data/an4_flac/fabc/an100-fabc-b.flac"
    assert np.array_equal(sf.read(flac, dtype="int16")[0], read_raw(utts["an100-fabc-b"][1]))
    fbank = tmp_path / "data" / "fbank"
    n_train = sum(TRAIN_SPEAKERS.values()) - 4
    assert len(load_manifest(fbank / "an4_cuts_train.jsonl.gz")) == 3 * n_train  # speed-perturbed
    assert len(load_manifest(fbank / "an4_cuts_dev.jsonl.gz")) == 4
    test_cuts = load_manifest(fbank / "an4_cuts_test.jsonl.gz")
    assert sorted(c.supervisions[0].text for c in test_cuts) == sorted(
        text for utt, (text, _) in utts.items() if utt.split("-")[1] in TEST_SPEAKERS)  # fmt: skip
    pretrain = load_manifest(fbank / "an4_cuts_pretrain.jsonl.gz")
    assert len(pretrain) == n_train  # AN4's training audio only, no speed copies, no dev/test
    assert f"from {n_train} transcripts" in (tmp_path / "exp/log/stage-3-bpe.log").read_text()
    for stage in range(8):
        assert list((tmp_path / "exp" / "log").glob(f"stage-{stage}-*.done")), stage
    assert list((tmp_path / "exp" / "finetune").glob("encoder*.onnx"))  # stage 7 exported


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "local" / name), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)  # fmt: skip


@pytest.mark.parametrize("script", ["download_an4.py", "prepare_an4.py"])
def test_the_an4_stage_scripts_have_help(script, tmp_path):
    proc = _script(script, "--help", cwd=tmp_path)
    assert proc.stdout.startswith("usage:") and "--log-file" in proc.stdout


def test_stage_0_links_an_existing_tree_and_stage_1_names_a_bad_line_without_a_traceback(tree, tmp_path):
    an4, _ = tree
    assert _script("download_an4.py", "--target-dir", tmp_path / "dl", "--existing", an4,
                   cwd=tmp_path).returncode == 0  # fmt: skip
    assert (tmp_path / "dl" / "an4").resolve() == an4.resolve()
    with open(an4 / "etc" / "an4_test.transcription", "a") as f:
        f.write("hello (an999-fxyz-b)\n")
    proc = _script("prepare_an4.py", "--corpus-dir", tmp_path / "dl" / "an4", "--output-dir",
                   tmp_path / "m", "--num-dev", "4", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "an4_test.transcription:5: expected" in proc.stderr
