"""Libri-Light VAD segments joined into cuts of at most --max-cut-duration (stages 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import make_librilight_tree
from lhotse import SupervisionSegment, load_manifest

from w2vbert.prep.manifests import CorpusError, prepare_manifests
from w2vbert.prep.segmentation import join_vad_segments


def _vad(*spans: tuple[float, float]) -> list[SupervisionSegment]:
    return [
        SupervisionSegment(id=f"r_{k}", recording_id="r", start=a, duration=b - a, speaker="s")
        for k, (a, b) in enumerate(spans)
    ]


def _spans(segments: list[SupervisionSegment]) -> list[tuple[float, float]]:
    return [(round(s.start, 3), round(s.end, 3)) for s in segments]


def test_consecutive_vad_segments_are_joined_greedily_pauses_included():
    vad = _vad((0.5, 4.0), (4.5, 9.0), (9.8, 10.5), (12.0, 14.0), (14.2, 15.0))
    joined = join_vad_segments(list(reversed(vad)), max_duration=10.0)  # any order in
    assert _spans(joined) == [(0.5, 10.5), (12.0, 15.0)]
    assert [s.id for s in joined] == ["r_0", "r_1"]
    assert all(s.custom == {"max_cut_duration": 10.0} and s.speaker == "s" for s in joined)


def test_a_vad_segment_longer_than_the_maximum_alone_is_cut_into_equal_windows():
    joined = join_vad_segments(_vad((1.0, 2.0), (2.5, 27.5), (28.0, 29.0)), max_duration=10.0)
    # 25 s -> 3 windows of 8.33 s; its neighbours are not joined to it
    windows = [(2.5, 10.833), (10.833, 19.167), (19.167, 27.5)]
    assert _spans(joined) == [(1.0, 2.0), *windows, (28.0, 29.0)]
    assert max(s.duration for s in joined) <= 10.0
    with pytest.raises(ValueError, match="`max_duration` must be > 0, but is 0"):
        join_vad_segments(_vad((0.0, 1.0)), 0)


def _covering(joined: list[tuple[float, float]], a: float, b: float) -> list[int]:
    return [k for k, (s, e) in enumerate(joined) if s < b - 1e-6 and e > a + 1e-6]


def test_a_simulated_librilight_tree_is_segmented_as_configured_in_stages_1_and_2(tmp_path: Path):
    tree = make_librilight_tree(tmp_path / "LibriLight", ("small",), num_speakers=2, minutes=2.0)
    written = prepare_manifests(
        tmp_path / "LibriLight", tmp_path / "m", "librilight", ["small"], max_cut_duration=20.0
    )
    sups = load_manifest(written["small"][1])
    recordings = {r.id: r for r in load_manifest(written["small"][0])}
    for path, vad in tree.items():
        rec_id = str(path.relative_to(tmp_path / "LibriLight").with_suffix(""))
        mine = sorted((s for s in sups if s.recording_id == rec_id), key=lambda s: s.start)
        joined = _spans(mine)
        assert [s.id for s in mine] == [f"{rec_id}_{k}" for k in range(len(mine))]  # in order
        assert all(e - s <= 20.0 + 1e-9 for s, e in joined)
        assert all(a[1] <= b[0] for a, b in zip(joined, joined[1:]))  # no overlaps
        assert joined[-1][1] <= recordings[rec_id].duration
        assert sum(1 for s, e in joined if len([v for v in vad if s <= v[0] and v[1] <= e]) > 1) > 1
        for a, b in vad:  # every VAD segment is in one joined segment, or split only if > 20 s
            covering = [joined[k] for k in _covering(joined, a, b)]
            if b - a <= 20.0:
                assert len(covering) == 1 and covering[0][0] <= a and b <= covering[0][1]
            else:
                assert len(covering) == 3 and covering[0][0] == a and covering[-1][1] == b
        # greedy: the next VAD segment would not have fitted
        starts = {a: k for k, (a, _) in enumerate(vad)}
        for (s, e), (s2, _) in zip(joined, joined[1:]):
            if s2 in starts and e - s <= 20.0:
                assert vad[starts[s2]][1] - s > 20.0
    assert any(b - a > 20.0 for vad in tree.values() for a, b in vad)  # the windows case is here

    # stage 2 trims the recordings to these supervisions: one cut each, none dropped as too long
    from w2vbert.prep.compute_features import compute_fbank_part, training_cut_filter

    cuts_path = compute_fbank_part(
        tmp_path / "m", tmp_path / "f", "librilight", "small",
        length_filter=training_cut_filter(max_duration=20.0),
    )  # fmt: skip
    cuts = load_manifest(cuts_path)
    assert sorted(c.id for c in cuts) == sorted(s.id for s in sups)
    by_id = {s.id: s for s in sups}
    assert all(abs(c.duration - by_id[c.id].duration) < 1e-3 for c in cuts)
    assert all(c.num_frames == pytest.approx(100 * c.duration, abs=2) for c in cuts)

    # another maximum over existing manifests is an error, not silently old segments
    again = (tmp_path / "LibriLight", tmp_path / "m", "librilight", ["small"])
    with pytest.raises(CorpusError, match="with --max-cut-duration 20, not --max-cut-duration 30"):
        prepare_manifests(*again, max_cut_duration=30.0)
    with pytest.raises(CorpusError, match="not one segment per VAD segment"):
        prepare_manifests(*again)
