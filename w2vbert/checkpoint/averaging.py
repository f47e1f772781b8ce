"""Model averaging, icefall semantics.

- During training, rank 0 keeps ``model_avg`` (float64): every ``average_period`` batches,
  ``model_avg = model_avg * (1 - p) + model * p`` with ``p = average_period / batch_idx_train``,
  i.e. the running mean of the model over all steps so far (sampled every period).
- For decoding, ``--epoch E --avg A``:
  * ``--no-use-averaged-model``: the mean of the ``model`` of ``epoch-(E-A+1).pt`` ... ``epoch-E.pt``;
  * ``--use-averaged-model``: the mean of the model over the steps between the end of epoch ``E-A``
    and the end of epoch ``E``, from two files: ``(avg_E * n_E - avg_{E-A} * n_{E-A}) / (n_E - n_{E-A})``
    where ``n`` is ``batch_idx_train`` of each file (needs ``E - A >= 1``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vbert.checkpoint.files import load_checkpoint

logger = logging.getLogger(__name__)


def init_averaged_model(model: nn.Module) -> dict[str, torch.Tensor]:
    """A float64 CPU copy of ``model.state_dict()`` (non-float entries copied as they are)."""
    return {
        k: (
            v.detach().to("cpu", torch.float64)
            if v.is_floating_point()
            else v.detach().to("cpu").clone()
        )
        for k, v in model.state_dict().items()
    }


@torch.no_grad()
def update_averaged_model(
    model_avg: dict[str, torch.Tensor], model: nn.Module, average_period: int, batch_idx_train: int
) -> None:
    """In place: ``avg = avg * (1 - p) + model * p``, ``p = average_period / batch_idx_train``."""
    if batch_idx_train <= 0:
        raise ValueError(f"`batch_idx_train` must be > 0, but is {batch_idx_train} instead.")
    weight_cur = average_period / batch_idx_train
    weight_avg = 1.0 - weight_cur
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            avg = model_avg[k]
            avg.mul_(weight_avg).add_(v.detach().to("cpu", torch.float64), alpha=weight_cur)
        else:
            model_avg[k] = v.detach().to("cpu").clone()


def _cast_like(
    avg: dict[str, torch.Tensor], like: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {k: (v.to(like[k].dtype) if like[k].is_floating_point() else v) for k, v in avg.items()}


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of float entries (computed in float64, cast back); others from the last dict."""
    if not state_dicts:
        raise ValueError("`state_dicts` must be non-empty, but is empty.")
    keys = list(state_dicts[-1])
    for i, sd in enumerate(state_dicts):
        if list(sd) != keys:
            diff = sorted(set(sd) ^ set(keys))
            raise ValueError(f"State dict {i} has different keys than the last one: {diff[:10]}")
    out = {}
    for k in keys:
        last = state_dicts[-1][k]
        if last.is_floating_point():
            acc = torch.zeros_like(last, dtype=torch.float64)
            for sd in state_dicts:
                acc += sd[k].to(torch.float64)
            out[k] = (acc / len(state_dicts)).to(last.dtype)
        else:
            out[k] = last.clone()
    return out


def average_checkpoints(paths: list[Path | str], key: str = "model") -> dict[str, torch.Tensor]:
    """Mean of ``ckpt[key]`` over the checkpoint files ``paths``."""
    return average_state_dicts([load_checkpoint(p)[key] for p in paths])


def average_with_model_avg(start: Path | str, end: Path | str) -> dict[str, torch.Tensor]:
    """Mean of the model between two checkpoints from their ``model_avg`` (see module docstring)."""
    a, b = load_checkpoint(start), load_checkpoint(end)
    for path, c in ((start, a), (end, b)):
        if c.get("model_avg") is None:
            raise ValueError(
                f"Checkpoint {path} has no averaged model (`model_avg`); use --no-use-averaged-model."
            )
    n_start, n_end = a["batch_idx_train"], b["batch_idx_train"]
    if n_end <= n_start:
        raise ValueError(f"{end} (batch {n_end}) must be later than {start} (batch {n_start}).")
    out = {}
    for k, v_end in b["model_avg"].items():
        if v_end.is_floating_point():
            out[k] = (v_end * n_end - a["model_avg"][k] * n_start) / (n_end - n_start)
        else:
            out[k] = v_end
    return _cast_like(out, b["model"])


def averaged_model_from_epochs(
    exp_dir: Path | str, epoch: int, avg: int, use_averaged_model: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, params)`` for icefall's ``--epoch --avg --use-averaged-model`` in ``exp_dir``."""
    exp_dir = Path(exp_dir)
    if epoch < 1 or avg < 1:
        raise ValueError(f"--epoch and --avg must be >= 1, but are {epoch} and {avg} instead.")
    if use_averaged_model:
        start = epoch - avg
        if start < 1:
            raise ValueError(
                f"--use-averaged-model needs --epoch > --avg (epoch-(E-A).pt is the start), "
                f"but --epoch is {epoch} and --avg is {avg}."
            )
        s, e = exp_dir / f"epoch-{start}.pt", exp_dir / f"epoch-{epoch}.pt"
        logger.info(f"Averaging the model between {s} and {e} (averaged model)")
        state = average_with_model_avg(s, e)
        params = load_checkpoint(e)["params"]
    else:
        paths = [exp_dir / f"epoch-{i}.pt" for i in range(epoch - avg + 1, epoch + 1)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing or epoch - avg + 1 < 1:
            raise FileNotFoundError(
                f"--epoch {epoch} --avg {avg} needs {[str(p) for p in paths]}; missing {missing}."
            )
        logger.info(f"Averaging {[p.name for p in paths]}")
        state = average_checkpoints(paths)
        params = load_checkpoint(paths[-1])["params"]
    return state, params


def averaging_suffix(epoch: int, avg: int, use_averaged_model: bool) -> str:
    """icefall's decode-file suffix part, e.g. ``epoch-30-avg-9-use-averaged-model``."""
    return f"epoch-{epoch}-avg-{avg}" + ("-use-averaged-model" if use_averaged_model else "")
