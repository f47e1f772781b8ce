"""WER/CER scoring and icefall-style result files (recogs, errs, wer-summary), via kaldialign.

``results`` everywhere is a list of ``(cut_id, ref_words, hyp_words)``.
"""

from __future__ import annotations

import ast
import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import kaldialign

from w2vbert.util.atomic import atomic_text

logger = logging.getLogger(__name__)

Result = tuple[str, Sequence[str], Sequence[str]]

EPS = "*"
"""Alignment placeholder for a missing word (insertion or deletion), as icefall."""


def write_recogs(path: str | Path, results: Sequence[Result]) -> None:
    """Writes ``<cut_id>:\\tref=[...]`` and ``<cut_id>:\\thyp=[...]`` lines, sorted by cut id."""
    with atomic_text(path) as f:
        for cut_id, ref, hyp in sorted(results, key=lambda r: r[0]):
            print(f"{cut_id}:\tref={list(ref)}", file=f)
            print(f"{cut_id}:\thyp={list(hyp)}", file=f)


def read_recogs(path: Path | str) -> dict[str, tuple[list[str], list[str]]]:
    """Stage 6's ``recogs-*.txt`` (``<id>:\\tref=[...]`` / ``<id>:\\thyp=[...]``) -> {id: (ref, hyp)}."""
    refs: dict[str, list[str]] = {}
    hyps: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for num, line in enumerate(f, 1):
            if not line.strip():
                continue
            head, sep, value = line.rstrip("\n").partition(":\t")
            if not sep or not value.startswith(("ref=", "hyp=")):
                raise ValueError(
                    f"{path}:{num}: expected '<id>:\\tref=[...]' or '<id>:\\thyp=[...]', got {line!r}."
                )
            (refs if value.startswith("ref=") else hyps)[head] = list(ast.literal_eval(value[4:]))
    if set(refs) != set(hyps):
        raise ValueError(
            f"{path}: ids with a ref but no hyp or vice versa: {sorted(set(refs) ^ set(hyps))[:10]}."
        )
    return {k: (refs[k], hyps[k]) for k in refs}


def _error_rate(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """100 * total kaldialign edit distance / total reference length over ``(ref, hyp)`` pairs."""
    errors = length = 0
    for ref, hyp in pairs:
        errors += kaldialign.edit_distance(list(ref), list(hyp))["total"]
        length += len(ref)
    return 100.0 * errors / length if length else (0.0 if errors == 0 else float("inf"))


def char_error_rate(results: Sequence[Result]) -> float:
    """CER in percent: character edit distance of the space-joined words (spaces count, as in
    Hugging Face ``evaluate``'s CER) over the reference characters."""
    return _error_rate([(" ".join(ref), " ".join(hyp)) for _, ref, hyp in results])


def word_error_rate(refs: dict[str, Sequence[str]], hyps: dict[str, Sequence[str]]) -> float:
    """WER in percent over the ids of ``refs`` (kaldialign edit distance)."""
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise ValueError(f"No hypothesis for {len(missing)} utterances, e.g. {missing[:5]}.")
    return _error_rate([(refs[k], hyps[k]) for k in refs])


def write_error_stats(path: str | Path, set_name: str, results: Sequence[Result]) -> float:
    """Aligns every hypothesis to its reference and writes an icefall-like ``errs`` file.

    Sections: the %WER line and error counts, ``PER-UTT DETAILS`` (``word`` when correct,
    ``(ref->hyp)`` otherwise, ``*`` = nothing), ``SUBSTITUTIONS``, ``DELETIONS``,
    ``INSERTIONS`` (most frequent first) and ``PER-WORD STATS``.

    Returns:
        The WER in percent: 100 * (insertions + deletions + substitutions) / reference words.
    """
    if len(results) == 0:
        raise ValueError(f"Set {set_name}: `results` must not be empty.")
    subs: Counter[tuple[str, str]] = Counter()
    ins: Counter[str] = Counter()
    dels: Counter[str] = Counter()
    # word -> [correct, ref-side errors, hyp-side errors]
    words: dict[str, list[int]] = {}
    num_ref_words = 0
    details = []
    for cut_id, ref, hyp in sorted(results, key=lambda r: r[0]):
        if EPS in ref or EPS in hyp:
            raise ValueError(f"Cut {cut_id}: words must not be the placeholder {EPS!r}.")
        num_ref_words += len(ref)
        tokens = []
        for ref_word, hyp_word in kaldialign.align(list(ref), list(hyp), EPS):
            for w in (ref_word, hyp_word):
                if w != EPS:
                    words.setdefault(w, [0, 0, 0])
            if ref_word == hyp_word:
                words[ref_word][0] += 1
                tokens.append(ref_word)
                continue
            tokens.append(f"({ref_word}->{hyp_word})")
            if ref_word == EPS:
                ins[hyp_word] += 1
                words[hyp_word][2] += 1
            elif hyp_word == EPS:
                dels[ref_word] += 1
                words[ref_word][1] += 1
            else:
                subs[(ref_word, hyp_word)] += 1
                words[ref_word][1] += 1
                words[hyp_word][2] += 1
        details.append(f"{cut_id}:\t" + " ".join(tokens))

    num_sub, num_ins, num_del = sum(subs.values()), sum(ins.values()), sum(dels.values())
    num_errors = num_sub + num_ins + num_del
    if num_ref_words == 0:
        wer = 0.0 if num_errors == 0 else float("inf")
    else:
        wer = 100.0 * num_errors / num_ref_words
    num_correct = num_ref_words - num_sub - num_del
    logger.info(
        f"[{set_name}] %WER {wer:.2f} [{num_errors} / {num_ref_words}, {num_ins} ins, "
        f"{num_del} del, {num_sub} sub ]"
    )

    def by_count(counter: Counter) -> list:
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))

    with atomic_text(path) as f:
        print(f"%WER = {wer:.2f}", file=f)
        print(
            f"Errors: {num_ins} insertions, {num_del} deletions, {num_sub} substitutions, "
            f"over {num_ref_words} reference words ({num_correct} correct)",
            file=f,
        )
        print(
            "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, "
            "DELETIONS:, INSERTIONS:, PER-WORD STATS:",
            file=f,
        )
        print("", file=f)
        print("PER-UTT DETAILS: corr or (ref->hyp)  ", file=f)
        for line in details:
            print(line, file=f)
        print("", file=f)
        print("SUBSTITUTIONS: count ref -> hyp", file=f)
        for (ref_word, hyp_word), count in by_count(subs):
            print(f"{count}   {ref_word} -> {hyp_word}", file=f)
        print("", file=f)
        print("DELETIONS: count ref", file=f)
        for word, count in by_count(dels):
            print(f"{count}   {word}", file=f)
        print("", file=f)
        print("INSERTIONS: count hyp", file=f)
        for word, count in by_count(ins):
            print(f"{count}   {word}", file=f)
        print("", file=f)
        print("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp", file=f)
        stats = sorted(words.items(), key=lambda kv: (-(kv[1][1] + kv[1][2]), kv[0]))
        for word, (corr, ref_err, hyp_err) in stats:
            print(f"{word}   {corr} {ref_err + hyp_err} {corr + ref_err} {corr + hyp_err}", file=f)
    return wer


def write_wer_summary(path: str | Path, wer_by_setting: dict[str, float]) -> None:
    """Writes ``settings\\tWER`` then one ``<setting>\\t<wer>`` line per setting, best first."""
    with atomic_text(path) as f:
        print("settings\tWER", file=f)
        for setting, wer in sorted(wer_by_setting.items(), key=lambda kv: kv[1]):
            print(f"{setting}\t{wer:.2f}", file=f)
