"""The one cut filter: drop cuts the model cannot use, and count why. Stage 2 applies it to the
training parts, training and validation to the cuts they load.

- fewer encoder steps than ``min_steps`` (the encoder needs some frames; masking needs a span);
- shorter than ``min_duration`` or longer than ``max_duration`` seconds;
- (with a tokenizer) more BPE tokens than encoder steps: the RNN-T loss cannot align them.

The filter is applied lazily (``cuts.filter(f)``); :meth:`CutFilter.report` summarises the counts seen so far.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from typing import Any, Callable

from w2vbert.data.fbank import num_valid_frames
from w2vbert.model.feature_encoder import output_lengths

logger = logging.getLogger(__name__)


def num_feature_frames(cut: Any, fbank: str = "icefall") -> int:
    """Fbank frames of ``cut`` the model reads (:func:`w2vbert.data.fbank.num_valid_frames`):
    from its features if present, else from its duration (10 ms hop); for ``w2v-bert-2.0`` the
    extractor's own count."""
    return num_valid_frames(cut, fbank)


class CutFilter:
    """A predicate over cuts that counts the dropped ones by reason."""

    def __init__(
        self,
        *,
        frames_to_steps: Callable[[int], int],
        min_steps: int = 1,
        min_duration: float = 0.0,
        max_duration: float = float("inf"),
        tokenize: Callable[[str], list[int]] | None = None,
        text_of: Callable[[Any], str] | None = None,
        fbank: str = "icefall",
    ) -> None:
        """
        Args:
            frames_to_steps: fbank frames -> encoder steps (e.g. the feature encoder's output_lengths).
            fbank: the model's fbank kind, which decides the frames it reads (:func:`num_feature_frames`).
            min_steps: fewest encoder steps a kept cut must have.
            min_duration, max_duration: duration bounds in seconds.
            tokenize, text_of: when given, drop cuts with more tokens than encoder steps.
        """
        self.frames_to_steps = frames_to_steps
        self.min_steps, self.min_duration, self.max_duration = min_steps, min_duration, max_duration
        self.tokenize, self.text_of = tokenize, text_of
        self.fbank = fbank
        self.kept = 0
        self.kept_seconds = 0.0
        self.dropped: Counter[str] = Counter()

    def reason(self, cut: Any) -> str | None:
        """Why ``cut`` is dropped, or None when it is kept."""
        steps = int(self.frames_to_steps(num_feature_frames(cut, self.fbank)))
        if steps < self.min_steps:
            return f"fewer than {self.min_steps} encoder step{'s' if self.min_steps > 1 else ''}"
        if cut.duration < self.min_duration:
            return f"shorter than {self.min_duration} s"
        if cut.duration > self.max_duration:
            return f"longer than {self.max_duration} s"
        if self.tokenize is not None:
            text = self.text_of(cut) if self.text_of is not None else cut.supervisions[0].text
            if len(self.tokenize(text)) > steps:
                return "more tokens than encoder steps"
        return None

    def __call__(self, cut: Any) -> bool:
        why = self.reason(cut)
        if why is None:
            self.kept += 1
            self.kept_seconds += cut.duration
            return True
        self.dropped[why] += 1
        logger.debug(f"Dropping cut {cut.id} ({cut.duration:.2f} s): {why}")
        return False

    def report(self) -> str:
        total = self.kept + sum(self.dropped.values())
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return f"kept {self.kept}/{total} cuts ({self.kept_seconds / 3600:.2f} h); dropped: {parts}"


def encoder_cut_filter(
    frame_stride: int = 4,
    *,
    min_steps: int = 1,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    tokenize: Callable[[str], list[int]] | None = None,
    text_of: Callable[[Any], str] | None = None,
    frontend: str = "conv2d",
    fbank: str = "icefall",
) -> CutFilter:
    """A :class:`CutFilter` counting encoder steps as the model's front end does
    (:func:`w2vbert.model.feature_encoder.output_lengths` at ``frame_stride`` for ``conv2d``,
    ``floor(T / frame_stride)`` for the ``stacked`` front end of w2v-BERT 2.0)."""
    if frontend == "stacked":
        def frames_to_steps(t: int) -> int:
            return t // frame_stride
    else:
        def frames_to_steps(t: int) -> int:
            return int(output_lengths(t, frame_stride))
    return CutFilter(
        frames_to_steps=frames_to_steps,
        min_steps=min_steps,
        min_duration=min_duration,
        max_duration=max_duration,
        tokenize=tokenize,
        text_of=text_of,
        fbank=fbank,
    )


def scan(cuts: Any, cut_filter: CutFilter, name: str) -> tuple[int, float]:
    """Run ``cut_filter`` over every cut once, log the counts; returns (kept cuts, kept seconds)."""
    kept, seconds = 0, 0.0
    try:
        for cut in cuts:
            if cut_filter(cut):
                kept += 1
                seconds += cut.duration
    except (EOFError, OSError, json.JSONDecodeError, zlib.error) as e:  # truncated / corrupt file
        raise ValueError(
            f"{name}: cannot read the cuts ({type(e).__name__}: {e}); the file is truncated or "
            "corrupt (re-run the stage that wrote it)"
        ) from e
    logger.info(f"{name}: {cut_filter.report()}")
    if kept == 0:
        raise ValueError(f"{name}: no cut is left after filtering ({cut_filter.report()}).")
    cut_filter.kept, cut_filter.kept_seconds, cut_filter.dropped = 0, 0.0, Counter()
    return kept, seconds
