"""The synthetic mini corpus: planning guarantees (disjoint voices/sentences, sizes, seed) and the
files it writes."""

import dataclasses
import json
import shutil

import pytest

import w2vbert.prep.mini_corpus as mc
from w2vbert.prep.mini_corpus import (
    MiniCorpusConfig,
    make_mini_corpus,
    plan_corpus,
    tiny_config,
)

# Planning needs no real text: any distinct strings of 5-25 words.
FAKE_SENTENCES = [f"SENTENCE {i} " + "WORD " * (5 + i % 15) for i in range(20000)]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


def _by_part(jobs):
    parts = {}
    for job in jobs:
        parts.setdefault(job.speaker.part, []).append(job)
    return parts


def test_plan_gives_test_and_dev_voices_that_no_training_part_uses():
    config = MiniCorpusConfig()
    parts = _by_part(plan_corpus(config, FAKE_SENTENCES))
    voices = {p: {j.speaker.voice for j in jobs} for p, jobs in parts.items()}
    training = voices[config.train_part] | voices[config.unlabelled_part]
    assert not voices[config.test_part] & (training | voices[config.dev_part])
    assert not voices[config.dev_part] & training
    assert len(voices[config.test_part]) == 10 and len(voices[config.dev_part]) == 10


def test_plan_uses_every_sentence_at_most_once_across_all_parts():
    jobs = plan_corpus(MiniCorpusConfig(), FAKE_SENTENCES)
    texts = [u.text for job in jobs for u in job.utterances]
    assert len(texts) == len(set(texts))


def test_plan_sizes_are_within_ten_percent_of_the_requested_minutes():
    config = MiniCorpusConfig()
    parts = _by_part(plan_corpus(config, FAKE_SENTENCES))
    for part, minutes, labelled in [
        (config.train_part, config.train_minutes, True),
        (config.dev_part, config.dev_minutes, True),
        (config.unlabelled_part, config.unlabelled_minutes, False),
    ]:
        planned = sum(
            mc.estimate_seconds(u.text, u.speed, labelled=labelled)
            for j in parts[part]
            for u in j.utterances
        )
        assert abs(planned / 60 - minutes) < 0.1 * minutes, part


def test_plan_is_a_function_of_the_seed():
    config = MiniCorpusConfig(train_minutes=2, dev_minutes=1, test_minutes=1, unlabelled_minutes=4)
    assert plan_corpus(config, FAKE_SENTENCES) == plan_corpus(config, FAKE_SENTENCES[::-1])
    other = dataclasses.replace(config, seed=1)
    assert plan_corpus(config, FAKE_SENTENCES) != plan_corpus(other, FAKE_SENTENCES)


def test_plan_raises_when_dev_and_test_need_more_voices_than_exist():
    config = MiniCorpusConfig(test_minutes=60, dev_minutes=60, labelled_seconds_per_speaker=30)
    with pytest.raises(ValueError, match="voices of their own"):
        plan_corpus(config, FAKE_SENTENCES)


def test_config_validate_lists_every_problem():
    config = MiniCorpusConfig(train_minutes=0, dev_part="test-mini")
    with pytest.raises(ValueError, match="train_minutes must be > 0.*part names"):
        config.validate()


@needs_espeak
def test_tiny_corpus_has_both_layouts_and_does_not_depend_on_nj(tmp_path):
    config = tiny_config(seed=3)
    info1 = make_mini_corpus(config, tmp_path / "a", FAKE_SENTENCES[:400], num_jobs=1)
    info2 = make_mini_corpus(config, tmp_path / "b", FAKE_SENTENCES[:400], num_jobs=2)
    assert info1 == info2
    flacs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.flac"))
    assert flacs == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.flac"))
    for rel in flacs:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    root = tmp_path / "a"
    assert list((root / config.train_part).glob("*/*/*.trans.txt"))
    meta = json.loads(next((root / config.unlabelled_part).glob("*/*/*.json")).read_text())
    assert set(meta) >= {"speaker", "voice_activity"} and meta["voice_activity"][0][1] > 0
    assert (root / "SPEAKERS.TXT").read_text().startswith(";ID")
    assert not list(tmp_path.glob(".*partial*"))


@needs_espeak
def test_existing_corpus_is_kept_for_the_same_config_and_refused_for_another(tmp_path):
    config = tiny_config()
    make_mini_corpus(config, tmp_path / "c", FAKE_SENTENCES[:400])
    stamp = (tmp_path / "c" / "corpus_info.json").stat().st_mtime_ns
    make_mini_corpus(config, tmp_path / "c", FAKE_SENTENCES[:400])
    assert (tmp_path / "c" / "corpus_info.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="--force"):
        make_mini_corpus(dataclasses.replace(config, seed=9), tmp_path / "c", FAKE_SENTENCES)


@needs_espeak
def test_failed_synthesis_leaves_no_corpus_directory(tmp_path, monkeypatch):
    calls = []

    def failing(job, root, sampling_rate=16000):
        calls.append(job)
        if len(calls) == 3:
            raise RuntimeError("espeak-ng failed (simulated)")
        return real(job, root, sampling_rate)

    real = mc.synthesize_file
    monkeypatch.setattr(mc, "synthesize_file", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        make_mini_corpus(tiny_config(), tmp_path / "d", FAKE_SENTENCES[:400])
    assert not (tmp_path / "d").exists()
