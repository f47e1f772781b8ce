"""One place that picks the pruned RNN-T implementation: k2 when importable, else fast_rnnt.

Both expose the same functions (same authors): ``rnnt_loss_smoothed``, ``get_rnnt_prune_ranges``,
``do_rnnt_pruning``, ``rnnt_loss_pruned`` and ``rnnt_loss``.
"""

from __future__ import annotations

import types


def _load() -> tuple[str, types.ModuleType]:
    try:
        import k2  # type: ignore[import-not-found]

        return "k2", k2
    except Exception:  # noqa: BLE001 - k2 absent or built for another torch
        import fast_rnnt  # type: ignore[import-not-found]

        return "fast_rnnt", fast_rnnt


_NAME, backend = _load()


def backend_name() -> str:
    """``"k2"`` or ``"fast_rnnt"``: the library the pruned RNN-T loss uses."""
    return _NAME
