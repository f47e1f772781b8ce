"""`exp/RESULTS.md`: recognition, pre-training, export, stage times and the ablation comparison."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from w2vbert.reporting.collect import (
    PretrainSummary,
    decode_results,
    export_check,
    latest_by_set,
    pretrain_summary,
    stage_times,
)
from w2vbert.reporting.plots import plot_code_usage, plot_pretrain_curves, plot_wer_bars
from w2vbert.reporting.streaming import streaming_section
from w2vbert.util.atomic import atomic_output
from w2vbert.util.provenance import git_sha

logger = logging.getLogger(__name__)

COMPARE_METHOD = "greedy_search"
COLLAPSE_MAX_PERPLEXITY = 8.0
"""MLM-only counts as collapsed when its code perplexity is at most this (a few codes) ..."""
COLLAPSE_MIN_MLM_ACC = 0.9
"""... and its MLM accuracy at least this."""
ALIVE_MIN_USAGE = 0.5
"""w2v-BERT "keeps most codes in use" when at least this fraction of codes is used."""


@dataclass(frozen=True, kw_only=True)
class System:
    """One row of the comparison: an optional pre-training run and its fine-tuning run."""

    key: str
    label: str
    pretrain_dir: Path | None
    finetune_dir: Path | None
    """``None``: a pre-training-only row (no WER)."""


def comparison_systems(exp_dir: Path) -> list[System]:
    """The systems of stage 8; (b) is the default run's exp/pretrain + exp/finetune."""
    c = exp_dir / "compare"
    return [
        System(key="a", label="(a) from scratch", pretrain_dir=None,
               finetune_dir=c / "finetune-scratch"),
        System(key="b", label="(b) w2v-BERT", pretrain_dir=exp_dir / "pretrain",
               finetune_dir=exp_dir / "finetune"),
        System(key="c", label="(c) contrastive only (w2v-Conformer)",
               pretrain_dir=c / "pretrain-contrastive", finetune_dir=c / "finetune-contrastive"),
        System(key="d", label="(d) MLM only", pretrain_dir=c / "pretrain-mlm",
               finetune_dir=c / "finetune-mlm"),
        System(key="e", label="(e) BEST-RQ (random-projection targets)",
               pretrain_dir=c / "pretrain-best-rq", finetune_dir=c / "finetune-best-rq"),
        System(key="b_features", label="(b') w2v-BERT, quantizer on learned features",
               pretrain_dir=c / "pretrain-features-w2vbert", finetune_dir=None),
        System(key="d_features", label="(d') MLM only, quantizer on learned features",
               pretrain_dir=c / "pretrain-features-mlm", finetune_dir=None),
    ]


def write_results(exp_dir: Path, *, title: str, command: str, dev_sets: list[str],
                  test_sets: list[str]) -> Path:
    """Writes `<exp_dir>/RESULTS.md` (+ `plots/*.png`) from whatever stages have run."""
    lines = [f"# {title}", "",
             f"{datetime.date.today().isoformat()}, git {git_sha(short=True)}; command: `{command}`", ""]
    sets = dev_sets + test_sets
    results = decode_results(exp_dir / "finetune")
    if results:
        lines += ["## Recognition (stage 6)", "",
                  "WER % / CER % (real-time factor, 1 process):", "",
                  "| decoding method | " + " | ".join(sets) + " |",
                  "|---|" + "---|" * len(sets)]
        for method in dict.fromkeys(r.method for r in results):
            by_set = latest_by_set(results, method)
            cells = [f"{by_set[s].wer:.2f} / {_cer(by_set[s].cer)} ({by_set[s].rtf:.3f})"
                     if s in by_set else "-" for s in sets]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    pre = pretrain_summary(exp_dir / "pretrain")
    if pre is not None:
        plot_pretrain_curves({"w2v-BERT": pre.train_curve}, exp_dir / "plots" / "pretrain.png")
        lines += ["## Pre-training (stage 4)", "", _pretrain_table({"w2v-BERT": pre}), "",
                  "![pre-training curves](plots/pretrain.png)", ""]
    check = export_check(exp_dir / "finetune")
    if check is not None:
        lines += ["## Export (stage 7, sherpa-onnx)", "", _export_table(check), ""]
    lines += streaming_section(exp_dir, dev_sets, test_sets)
    systems = [s for s in comparison_systems(exp_dir)
               if any(d is not None and d.is_dir() for d in (s.finetune_dir, s.pretrain_dir))]
    if (exp_dir / "compare").is_dir():
        lines += _comparison(exp_dir, systems, dev_sets, test_sets)
    times = stage_times(exp_dir / "log")
    if times:
        lines += ["## Time per stage", "", "| stage | wall time (s) |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in times.items()]
        lines += [f"| total | {sum(times.values())} |", ""]
    out = exp_dir / "RESULTS.md"
    with atomic_output(out) as tmp:
        tmp.write_text("\n".join(lines))
    return out


def _cer(cer: float | None) -> str:
    return "-" if cer is None else f"{cer:.2f}"


def _pretrain_table(summaries: dict[str, PretrainSummary]) -> str:
    keys = ["loss", "contrastive", "mlm", "diversity", "contrastive_acc", "mlm_acc",
            "code_perplexity", "code_usage"]
    rows = ["| system | steps | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, s in summaries.items():
        cells = [f"{s.final[k]:.3f}" if k in s.final else "-" for k in keys]
        rows.append(f"| {name} | {s.steps} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n(final validation metrics; code_usage = fraction of codebook entries used)"


def _export_table(check_md: Path) -> str:
    """The body of stage 7's `export-check-*.md` (its own heading dropped)."""
    body = check_md.read_text().splitlines()
    return "\n".join(line for line in body if not line.startswith("# "))


def _comparison(exp_dir: Path, systems: list[System], dev_sets: list[str],
                test_sets: list[str]) -> list[str]:
    wers: dict[str, dict[str, float]] = {}
    cers: dict[str, dict[str, float | None]] = {}
    summaries: dict[str, PretrainSummary] = {}
    for s in systems:
        by_set = {}
        if s.finetune_dir is not None:
            by_set = latest_by_set(decode_results(s.finetune_dir), COMPARE_METHOD)
        wers[s.key] = {k: v.wer for k, v in by_set.items()}
        cers[s.key] = {k: v.cer for k, v in by_set.items()}
        if s.pretrain_dir is not None and (p := pretrain_summary(s.pretrain_dir)) is not None:
            summaries[s.key] = p
    labels = {s.key: s.label for s in systems}
    sets = dev_sets + test_sets
    lines = ["## Comparison (stage 8): same fine-tuning budget and data", "",
             f"WER % and CER % ({COMPARE_METHOD}):", "",
             "| system | " + " | ".join(f"{x} WER" for x in sets) + " | "
             + " | ".join(f"{x} CER" for x in sets) + " | code perplexity | codes used | MLM acc |",
             "|---|" + "---|" * (2 * len(sets) + 3)]
    for s in systems:
        p = summaries.get(s.key)
        extra = ([f"{p.final.get('code_perplexity', float('nan')):.1f}",
                  f"{p.final.get('code_usage', float('nan')):.1%}",
                  f"{p.final.get('mlm_acc', float('nan')):.3f}"] if p else ["-", "-", "-"])
        cells = [f"{wers[s.key][x]:.2f}" if x in wers[s.key] else "-" for x in sets]
        cells += [_cer(cers[s.key].get(x)) for x in sets]
        lines.append(f"| {s.label} | " + " | ".join(cells + extra) + " |")
    lines += ["", "Claims of the paper, at this scale (test = unseen voices; nothing was tuned on it):", ""]
    lines += _claims(wers, summaries, test_sets[0] if test_sets else "")
    curves = {labels[k]: v.train_curve for k, v in summaries.items()}
    plots = exp_dir / "plots"
    if curves:
        plot_pretrain_curves(curves, plots / "compare-pretrain.png")
        plot_code_usage(curves, plots / "compare-codes.png")
        lines += ["", "![pre-training curves](plots/compare-pretrain.png)", "",
                  "![codebook use](plots/compare-codes.png)"]
    if any(wers.values()):
        plot_wer_bars({labels[k]: v for k, v in wers.items() if v}, plots / "compare-wer.png")
        lines += ["", "![WER](plots/compare-wer.png)"]
    return lines + [""]


def _claims(wers: dict[str, dict[str, float]], pre: dict[str, PretrainSummary],
            test: str) -> list[str]:
    def w(key: str) -> float | None:
        return wers.get(key, {}).get(test)

    out = []
    a, b, c = w("a"), w("b"), w("c")
    if a is not None and b is not None:
        held = b <= 0.7 * a
        out.append(f"1. w2v-BERT WER <= 0.7 x scratch WER on {test}: {b:.2f} vs 0.7 x {a:.2f} = "
                   f"{0.7 * a:.2f} -> **{'held' if held else 'not held'}**")
    else:
        out.append("1. w2v-BERT vs scratch: not measured (run stage 8)")
    if b is not None and c is not None:
        out.append(f"2. w2v-BERT <= contrastive only on {test}: {b:.2f} vs {c:.2f} -> "
                   f"**{'held' if b <= c else 'not held'}**")
    else:
        out.append("2. w2v-BERT vs contrastive only: not measured (run stage 8)")
    # the paper's collapse needs a quantizer whose input is learned: (b')/(d') when they ran
    # (with the fixed fbank input of (b)/(d) the MLM-only quantizer gets no gradient at all)
    d, bb = pre.get("d_features"), pre.get("b_features")
    which = "(d') vs (b')"
    if d is None or bb is None:
        d, bb, which = pre.get("d"), pre.get("b"), "(d) vs (b)"
    if d is not None and bb is not None:
        d_ppl, d_acc = d.final.get("code_perplexity", 0.0), d.final.get("mlm_acc", 0.0)
        b_use = bb.final.get("code_usage", 0.0)
        collapsed = d_ppl <= COLLAPSE_MAX_PERPLEXITY and d_acc >= COLLAPSE_MIN_MLM_ACC
        alive = b_use >= ALIVE_MIN_USAGE
        out.append(
            f"3. {which}: MLM only collapses (code perplexity {d_ppl:.1f} <= {COLLAPSE_MAX_PERPLEXITY:g} and "
            f"MLM acc {d_acc:.3f} >= {COLLAPSE_MIN_MLM_ACC}) while w2v-BERT keeps most codes "
            f"(used {b_use:.1%} >= {ALIVE_MIN_USAGE:.0%}) -> **{'held' if collapsed and alive else 'not held'}**"
        )
    else:
        out.append("3. collapse of MLM only: not measured (run stage 8)")
    e = w("e")
    if b is not None and e is not None:  # not a claim of the paper: the objectives side by side
        out.append(f"4. (not a claim of the paper) BEST-RQ vs w2v-BERT on {test}: {e:.2f} vs "
                   f"{b:.2f} ({'BEST-RQ' if e < b else 'w2v-BERT'} lower)")
    return out


