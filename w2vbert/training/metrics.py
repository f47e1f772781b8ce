"""Training metrics: frame-weighted running means and their sinks (TensorBoard, metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from w2vbert.util.atomic import atomic_output


class MetricsTracker:
    """Frame-weighted sums of per-batch metrics; ``averages()`` gives their weighted means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.frames = 0.0
        self.batches = 0

    def add(self, metrics: dict[str, float], num_frames: float) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * num_frames
        self.frames += num_frames
        self.batches += 1

    def averages(self) -> dict[str, float]:
        denom = self.frames if self.frames > 0 else 1.0
        return {k: v / denom for k, v in self.sums.items()}

    @staticmethod
    def format(values: dict[str, float]) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


class MetricSinks:
    """TensorBoard scalars and a JSON-lines file (``<exp_dir>/<jsonl_name>``) for plots; rank 0 only."""

    def __init__(
        self, exp_dir: Path, tensorboard: bool, enabled: bool, jsonl_name: str = "metrics.jsonl"
    ) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = exp_dir / jsonl_name
        # the event file is made at the first value: a run refused at its start leaves none
        self.tensorboard_dir = exp_dir / "tensorboard" if enabled and tensorboard else None

    def _tensorboard(self):
        if self.writer is None and self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        return self.writer

    def truncate_after(self, step: int) -> None:
        """Drop JSONL rows with ``step`` > ``step`` (rows written after the checkpoint we resume from)."""
        if not self.enabled or not self.jsonl.is_file():
            return
        keep = []
        for line in self.jsonl.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        with atomic_output(self.jsonl) as tmp:
            tmp.write_text("".join(x + "\n" for x in keep))

    def write(self, split: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        writer = self._tensorboard()
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(f"{split}/{k}", v, step)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
