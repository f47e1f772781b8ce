"""Stage 1 (manifests): layouts, Lhotse parsing, and one test per kind of bad input."""

import logging

import pytest
from data_fixtures import (
    make_librilight_part,
    make_librispeech_part,
    signal,
    write_flac,
)
from lhotse import load_manifest

from w2vbert.prep.manifests import (
    CorpusError,
    detect_layout,
    find_parts,
    prepare_manifests,
)


def test_both_layouts_are_detected_parsed_and_written_with_the_prefix(tmp_path):
    corpus = tmp_path / "corpus"
    make_librispeech_part(corpus, "train-x")
    make_librilight_part(corpus, "unlab-x")
    (corpus / "notes").mkdir()
    assert find_parts(corpus) == ["train-x", "unlab-x"]
    assert detect_layout(corpus / "unlab-x") == "librilight"

    written = prepare_manifests(corpus, tmp_path / "m", "toy")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "toy_recordings_train-x.jsonl.gz",
        "toy_recordings_unlab-x.jsonl.gz",
        "toy_supervisions_train-x.jsonl.gz",
        "toy_supervisions_unlab-x.jsonl.gz",
    ]
    sups = load_manifest(written["train-x"][1])
    assert {s.id: s.text for s in sups}["11-100-0001"] == "THE QUICK BROWN FOX"
    assert {s.speaker for s in sups} == {"11", "12"}
    vad = load_manifest(written["unlab-x"][1])
    assert len(vad) == 4 and all(s.text is None for s in vad)
    assert vad[0].start == pytest.approx(0.1) and vad[0].duration == pytest.approx(1.1)


def test_existing_manifests_are_skipped_unless_forced(tmp_path):
    corpus = tmp_path / "corpus"
    make_librispeech_part(corpus, "train-x")
    rec_path, _ = prepare_manifests(corpus, tmp_path / "m", "toy")["train-x"]
    stamp = rec_path.stat().st_mtime_ns
    prepare_manifests(corpus, tmp_path / "m", "toy")
    assert rec_path.stat().st_mtime_ns == stamp
    prepare_manifests(corpus, tmp_path / "m", "toy", force=True)
    assert rec_path.stat().st_mtime_ns != stamp


def _prepare_fails(corpus, out, match):
    with pytest.raises(CorpusError, match=match):
        prepare_manifests(corpus, out, "toy", ["train-x"])
    assert not list(out.glob("*.jsonl.gz")) and not list(out.glob(".partial*"))


def test_transcript_line_without_audio_is_an_error_naming_the_line(tmp_path):
    paths = make_librispeech_part(tmp_path / "c")
    paths["11-100-0001"].unlink()
    _prepare_fails(
        tmp_path / "c", tmp_path / "m", r"11-100\.trans\.txt:2: .*no audio file .*11-100-0001\.flac"
    )


def test_audio_without_transcript_is_an_error_naming_the_file(tmp_path):
    make_librispeech_part(tmp_path / "c")
    write_flac(tmp_path / "c/train-x/11/100/11-100-0009.flac", signal(0.5))
    _prepare_fails(
        tmp_path / "c", tmp_path / "m", r"11-100-0009\.flac: audio file without a transcript"
    )


def test_empty_transcript_is_an_error(tmp_path):
    make_librispeech_part(tmp_path / "c", texts={"11-100-0000": "", "11-100-0001": "FINE WORDS"})
    _prepare_fails(
        tmp_path / "c",
        tmp_path / "m",
        r"11-100\.trans\.txt:1: empty transcript for utterance 11-100-0000",
    )


def test_non_ascii_transcript_is_an_error(tmp_path):
    make_librispeech_part(tmp_path / "c", texts={"11-100-0000": "CAF\u00c9 AU LAIT"})
    _prepare_fails(tmp_path / "c", tmp_path / "m", "non-ASCII transcript for utterance 11-100-0000")


def test_corrupt_audio_is_an_error_naming_the_file(tmp_path):
    paths = make_librispeech_part(tmp_path / "c")
    paths["12-200-0000"].write_bytes(b"fLaC but then garbage" * 10)
    _prepare_fails(
        tmp_path / "c", tmp_path / "m", r"12-200-0000\.flac: unreadable or corrupt audio"
    )


def test_zero_byte_audio_file_is_an_error_naming_the_file(tmp_path):
    paths = make_librispeech_part(tmp_path / "c")
    paths["12-200-0000"].write_bytes(b"")
    _prepare_fails(
        tmp_path / "c", tmp_path / "m", r"12-200-0000\.flac: unreadable or corrupt audio"
    )


def test_audio_with_no_samples_is_an_error_naming_the_file(tmp_path):
    paths = make_librispeech_part(tmp_path / "c")
    write_flac(paths["11-100-0000"], signal(0.0))
    # libsndfile cannot reopen the 0-sample FLAC it wrote: either message names the file.
    _prepare_fails(
        tmp_path / "c", tmp_path / "m", r"11-100-0000\.flac: (empty audio|unreadable or corrupt)"
    )


def test_librilight_audio_without_json_is_an_error(tmp_path):
    paths = make_librilight_part(tmp_path / "c", "unlab-x")
    paths[1].with_suffix(".json").unlink()
    with pytest.raises(
        CorpusError, match=r"20_0_000\.flac|21_1_000\.flac: audio file without its Libri-Light JSON"
    ):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["unlab-x"])


def test_librilight_json_without_voice_activity_is_an_error(tmp_path):
    paths = make_librilight_part(tmp_path / "c", "unlab-x")
    paths[0].with_suffix(".json").write_text('{"speaker": "20", "voice_activity": []}')
    with pytest.raises(
        CorpusError, match=r"20_0_000\.json: 'voice_activity' must be a non-empty list"
    ):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["unlab-x"])


def test_missing_part_and_unknown_layout_are_errors(tmp_path):
    make_librispeech_part(tmp_path / "c")
    with pytest.raises(CorpusError, match="dev-x does not exist"):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["dev-x"])
    (tmp_path / "c" / "odd" / "a" / "b").mkdir(parents=True)
    with pytest.raises(CorpusError, match="neither the LibriSpeech layout"):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["odd"])


def test_non_16khz_and_stereo_audio_are_accepted_and_logged_for_stage_2(tmp_path, caplog):
    make_librispeech_part(tmp_path / "c", "train-x", sampling_rate=22050)
    make_librispeech_part(tmp_path / "c", "dev-x", channels=2)
    with caplog.at_level(logging.WARNING):
        written = prepare_manifests(tmp_path / "c", tmp_path / "m", "toy", ["train-x", "dev-x"])
    assert "Part train-x: 3 recording(s) are not 16000 Hz (rates [22050]" in caplog.text
    assert "resamples them to 16000 Hz" in caplog.text
    assert "Part dev-x: 3 recording(s) have more than one channel" in caplog.text
    assert "downmixes them to mono" in caplog.text
    assert {r.sampling_rate for r in load_manifest(written["train-x"][0])} == {22050}


def test_parts_come_from_several_corpus_dirs_each_in_exactly_one(tmp_path):
    make_librispeech_part(tmp_path / "LibriSpeech", "train-x")
    make_librilight_part(tmp_path / "LibriLight", "small")
    dirs = [tmp_path / "LibriSpeech", tmp_path / "LibriLight"]
    written = prepare_manifests(dirs, tmp_path / "m", "toy", ["train-x", "small"])
    assert sorted(written) == ["small", "train-x"]
    assert load_manifest(written["small"][1])[0].text is None
    none_of = r"Part\(s\) dev-x are in none of .*LibriSpeech .*LibriLight"
    with pytest.raises(CorpusError, match=none_of):
        prepare_manifests(dirs, tmp_path / "m", "toy", ["train-x", "dev-x"])
    make_librilight_part(tmp_path / "LibriSpeech", "small")
    twice = r"more than one corpus directory: small in .*LibriSpeech and"
    with pytest.raises(CorpusError, match=twice):
        prepare_manifests(dirs, tmp_path / "m2", "toy")
