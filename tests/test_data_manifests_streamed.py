"""Stage 1 streams each part: its manifests equal those of Lhotse's own recipes (what stage 1
wrote before it streamed), directory walks follow ``rglob``'s order, and problem lists are capped."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from data_fixtures import (
    make_librilight_part,
    make_librilight_tree,
    make_librispeech_part,
    make_librispeech_tree,
    signal,
    write_flac,
)
from lhotse import SupervisionSet

from w2vbert.prep.corpus_walk import walk_directories
from w2vbert.prep.manifests import CorpusError, prepare_manifests
from w2vbert.prep.segmentation import join_recording_segments


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.read().splitlines()


def _lhotse_lines(manifest, tmp: Path) -> list[str]:
    manifest.to_file(tmp)
    return _lines(tmp)


def _lhotse_manifests(corpus: Path, part: str, layout: str, max_cut_duration=None):
    """What stage 1 wrote before it streamed: Lhotse's recipe, then the joining of the VAD
    segments sorted by recording."""
    from lhotse.recipes import prepare_librispeech
    from lhotse.recipes.librilight import _prepare_subset

    if layout == "librispeech":
        m = prepare_librispeech(corpus, dataset_parts=[part], output_dir=None)[part]
        return m["recordings"], m["supervisions"]
    recordings, supervisions = _prepare_subset(part, corpus)
    if max_cut_duration is not None:
        by_recording = sorted(supervisions, key=lambda s: (s.recording_id, s.start))
        supervisions = SupervisionSet.from_segments(
            join_recording_segments(by_recording, max_cut_duration)
        )
    return recordings, supervisions


def test_manifests_equal_lhotse_recipes_on_librispeech_and_librilight_trees(tmp_path):
    corpus = tmp_path / "c"
    make_librispeech_tree(corpus, utterances=4, seconds=0.5)
    make_librispeech_part(corpus, "train-x", seconds=0.7)
    tree = make_librilight_tree(corpus, ("small",), num_speakers=3, minutes=0.5)
    first = next(iter(tree))  # a VAD segment running past the end is trimmed, as Lhotse does
    meta = json.loads(first.with_suffix(".json").read_text())
    meta["voice_activity"].append([meta["voice_activity"][-1][1] + 0.1, 10_000.0])
    first.with_suffix(".json").write_text(json.dumps(meta))
    make_librilight_part(corpus, "unlab-x", num_files=3)
    written = prepare_manifests(corpus, tmp_path / "m", "toy", num_jobs=2)
    assert len(written) == 10
    for part, (rec_path, sup_path) in written.items():
        layout = "librilight" if part in ("small", "unlab-x") else "librispeech"
        recordings, supervisions = _lhotse_manifests(corpus, part, layout)
        assert _lines(rec_path) == _lhotse_lines(recordings, tmp_path / f"r_{part}.jsonl.gz")
        assert _lines(sup_path) == _lhotse_lines(supervisions, tmp_path / f"s_{part}.jsonl.gz")


def test_joined_segments_equal_the_joined_lhotse_segments_in_recording_order(tmp_path):
    corpus = tmp_path / "c"
    make_librilight_tree(corpus, ("small",), num_speakers=4, minutes=1.0)
    rec_path, sup_path = prepare_manifests(corpus, tmp_path / "m", "toy", max_cut_duration=20)[
        "small"
    ]
    recordings, supervisions = _lhotse_manifests(corpus, "small", "librilight", 20)
    assert _lines(rec_path) == _lhotse_lines(recordings, tmp_path / "r.jsonl.gz")
    ours = _lines(sup_path)
    assert sorted(ours) == sorted(_lhotse_lines(supervisions, tmp_path / "s.jsonl.gz"))
    # ... in the recordings' order (which stage 2 streams by), not sorted by recording id
    order = [json.loads(line)["id"] for line in _lines(rec_path)]
    seen = [json.loads(line)["recording_id"] for line in ours]
    assert list(dict.fromkeys(seen)) == order


def test_directories_are_walked_in_rglob_order(tmp_path):
    for k in range(30):
        write_flac(tmp_path / f"s{k % 7}" / f"b{k % 3}" / f"u{k}.flac", signal(0.01))
    (tmp_path / "link").symlink_to(tmp_path / "s1", target_is_directory=True)
    walked = [d / n for d, names in walk_directories(tmp_path) for n in names]
    assert [p for p in walked if p.suffix == ".flac"] == list(tmp_path.rglob("*.flac"))


def test_problems_are_all_counted_and_the_first_20_listed(tmp_path):
    make_librispeech_part(tmp_path / "c")
    for k in range(30):
        write_flac(tmp_path / f"c/train-x/11/100/11-100-{100 + k}.flac", signal(0.1))
    with pytest.raises(CorpusError, match=r"30 problem\(s\):") as e:
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")
    assert str(e.value).count("audio file without a transcript line") == 20
    assert str(e.value).endswith("... and 10 more")


def test_a_transcript_line_of_another_chapter_is_an_error_naming_the_line(tmp_path):
    make_librispeech_part(tmp_path / "c")
    trans = tmp_path / "c/train-x/11/100/11-100.trans.txt"
    trans.write_text(trans.read_text() + "12-200-0000 JUMPS OVER THE LAZY DOG\n")
    with pytest.raises(CorpusError, match=r"11-100\.trans\.txt:3: utterance 12-200-0000 belongs in"):
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")


def test_every_bad_audio_file_of_a_part_is_named_and_nothing_is_written(tmp_path):
    paths = make_librilight_part(tmp_path / "c", "unlab-x", num_files=3)
    for path in paths[:2]:
        path.write_bytes(b"fLaC but then garbage" * 10)
    with pytest.raises(CorpusError, match=r"2 problem\(s\)") as e:
        prepare_manifests(tmp_path / "c", tmp_path / "m", "toy")
    assert all(f"{p.resolve()}: unreadable or corrupt audio" in str(e.value) for p in paths[:2])
    assert not list((tmp_path / "m").glob("*.jsonl.gz")) and not list((tmp_path / "m").glob(".p*"))
