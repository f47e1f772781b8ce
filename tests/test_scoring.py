"""WER scoring and the recogs / errs / wer-summary files, on a hand-checked example."""

from __future__ import annotations

from pathlib import Path

import kaldialign
import pytest

from w2vbert.decoding.scoring import (
    char_error_rate,
    read_recogs,
    write_error_stats,
    write_recogs,
    write_wer_summary,
)

# Hand count: utt-a 1 substitution (sat->sit) + 1 deletion (the); utt-b 1 insertion (big);
# utt-c correct. 3 errors over 6 + 2 + 2 = 10 reference words: WER 30 %.
RESULTS = [
    ("utt-b", "hello world".split(), "hello big world".split()),
    ("utt-a", "the cat sat on the mat".split(), "the cat sit on mat".split()),
    ("utt-c", "a b".split(), "a b".split()),
]


def test_error_stats_give_hand_counted_wer_and_sections(tmp_path: Path) -> None:
    path = tmp_path / "errs-test-clean-greedy_search.txt"
    wer = write_error_stats(path, "test-clean", RESULTS)
    assert wer == pytest.approx(30.0)
    batch = kaldialign.batch_error_rate([r[1] for r in RESULTS], [r[2] for r in RESULTS])
    assert wer == pytest.approx(100 * batch["err_rate"])

    lines = path.read_text().splitlines()
    assert lines[0] == "%WER = 30.00"
    assert lines[1] == (
        "Errors: 1 insertions, 1 deletions, 1 substitutions, over 10 reference words (8 correct)"
    )
    text = "\n".join(lines)
    assert "utt-a:\tthe cat (sat->sit) on (the->*) mat" in text
    assert "utt-b:\thello (*->big) world" in text
    assert "utt-c:\ta b" in text
    sections = {
        name: lines.index(header)
        for name, header in [
            ("sub", "SUBSTITUTIONS: count ref -> hyp"),
            ("del", "DELETIONS: count ref"),
            ("ins", "INSERTIONS: count hyp"),
        ]
    }
    assert lines[sections["sub"] + 1] == "1   sat -> sit"
    assert lines[sections["del"] + 1] == "1   the"
    assert lines[sections["ins"] + 1] == "1   big"
    # PER-WORD STATS: "the" is correct once and deleted once: corr 1, errs 1, 2 in ref, 1 in hyp.
    assert "the   1 1 2 1" in lines


def test_substitutions_are_listed_most_frequent_first(tmp_path: Path) -> None:
    results = [("u1", ["x", "y"], ["z", "w"]), ("u2", ["y"], ["w"])]
    write_error_stats(tmp_path / "errs.txt", "dev", results)
    lines = (tmp_path / "errs.txt").read_text().splitlines()
    i = lines.index("SUBSTITUTIONS: count ref -> hyp")
    assert lines[i + 1 : i + 3] == ["2   y -> w", "1   x -> z"]


def test_recogs_file_lists_ref_and_hyp_sorted_by_cut(tmp_path: Path) -> None:
    path = tmp_path / "recogs-test-clean-greedy_search.txt"
    write_recogs(path, RESULTS)
    lines = path.read_text().splitlines()
    assert lines[:2] == [
        "utt-a:\tref=['the', 'cat', 'sat', 'on', 'the', 'mat']",
        "utt-a:\thyp=['the', 'cat', 'sit', 'on', 'mat']",
    ]
    assert len(lines) == 6 and lines[2].startswith("utt-b:")


def test_wer_summary_lists_settings_best_first(tmp_path: Path) -> None:
    path = tmp_path / "wer-summary-test-clean.txt"
    write_wer_summary(path, {"beam_size_4": 12.5, "greedy_search": 13.25})
    assert path.read_text() == "settings\tWER\nbeam_size_4\t12.50\ngreedy_search\t13.25\n"


def test_error_stats_reject_empty_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Set dev: `results` must not be empty"):
        write_error_stats(tmp_path / "errs.txt", "dev", [])


def test_char_error_rate_counts_characters_of_the_joined_words_spaces_included():
    # "the cat sat on the mat" (22 chars) -> "the cat sit on mat": a->i, then "the " deleted (4):
    # 5 errors; "hello world" (11) -> "hello big world": "big " inserted (4); "a b" exact (3).
    assert char_error_rate(RESULTS) == pytest.approx(100.0 * 9 / 36)
    assert char_error_rate([("u", [], [])]) == 0.0


def test_recogs_round_trip(tmp_path: Path):
    path = tmp_path / "recogs-x.txt"
    write_recogs(path, RESULTS)
    assert read_recogs(path) == {k: (list(r), list(h)) for k, r, h in RESULTS}
