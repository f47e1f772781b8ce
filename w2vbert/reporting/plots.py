"""PNG figures of a run: pre-training curves, codebook use, WER bars (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from w2vbert.util.atomic import atomic_output


def _curves_over_steps(
    curves: dict[str, list[dict]], keys: list[tuple[str, str]], path: Path, width: float
) -> Path:
    """One panel per ``(metric key, title)``, one line per system over the rows' steps."""
    fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), 3.4))
    for ax, (key, title) in zip(axes, keys):
        for name, rows in curves.items():
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_pretrain_curves(curves: dict[str, list[dict]], path: Path) -> Path:
    """Training loss parts over steps, one line per pre-training system.

    `curves`: `{system: metrics.jsonl training rows}`.
    """
    keys = [("loss", "total loss"), ("contrastive", "contrastive loss"), ("mlm", "MLM loss"),
            ("mlm_acc", "MLM accuracy")]
    return _curves_over_steps(curves, keys, path, width=4.2)


def plot_code_usage(curves: dict[str, list[dict]], path: Path) -> Path:
    """Codebook perplexity and fraction of codes used over steps, one line per system."""
    keys = [("code_perplexity", "code perplexity"), ("code_usage", "fraction of codes used")]
    return _curves_over_steps(curves, keys, path, width=4.5)


def plot_wer_bars(wers: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: `{system: {set: WER %}}`."""
    systems = list(wers)
    sets = sorted({s for v in wers.values() for s in v})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(systems), 3.6))
    width = 0.8 / max(len(sets), 1)
    for i, set_name in enumerate(sets):
        xs = [j + i * width for j in range(len(systems))]
        ys = [wers[s].get(set_name, float("nan")) for s in systems]
        bars = ax.bar(xs, ys, width, label=set_name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([j + width * (len(sets) - 1) / 2 for j in range(len(systems))], systems,
                  fontsize=8)
    ax.set_ylabel("WER %")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
