"""Lhotse datasets: a CutSet mini-batch (from a sampler) -> a dict of padded tensors.

Batches (N cuts, sorted by decreasing duration, T = longest feature length, F = 80):

- :class:`PretrainDataset`: ``features`` (N, T, F) float, ``feature_lens`` (N,) int64,
  ``durations`` (N,) float seconds, ``cut_ids`` list[str]. Supervisions are not needed.
- :class:`AsrDataset`: the same plus ``texts`` list[str] and ``tokens`` list[list[int]]
  (BPE ids from a sentencepiece model), with optional SpecAugment on ``features`` in training.

Features are read from the cuts (precomputed, ``PrecomputedFeatures``) or computed on the fly
(``OnTheFlyFeatures`` with the recipe's fbank, :mod:`w2vbert.data.fbank`; see :func:`create_input_strategy`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from lhotse import CutSet
from lhotse.dataset import OnTheFlyFeatures, PrecomputedFeatures, SpecAugment

from w2vbert.data.fbank import fbank_extractor, num_valid_frames

logger = logging.getLogger(__name__)

InputStrategy = Callable[[CutSet], tuple[torch.Tensor, torch.Tensor]]


def create_input_strategy(
    on_the_fly_feats: bool, fbank: str = "icefall", device: str | torch.device = "cpu"
) -> InputStrategy:
    """``OnTheFlyFeatures`` of fbank ``fbank`` when ``on_the_fly_feats`` (kaldifeat on
    ``device``: a GPU computes the batch's fbank there; only without DataLoader workers, which
    cannot use CUDA), else ``PrecomputedFeatures()``; for ``w2v-bert-2.0`` wrapped in
    :class:`ValidFrames` (the model reads the extractor's frames, not Lhotse's count)."""
    strategy: InputStrategy = PrecomputedFeatures()
    if on_the_fly_feats:
        strategy = OnTheFlyFeatures(fbank_extractor(device=str(device), kind=fbank))
    return ValidFrames(strategy, fbank) if fbank == "w2v-bert-2.0" else strategy


class ValidFrames:
    """An input strategy giving ``inner``'s features with the valid lengths the model reads,
    :func:`w2vbert.data.fbank.num_valid_frames` per cut: for w2v-BERT 2.0 the extractor's own
    frame count, which leaves the 2 filler frames Lhotse's count needs as padding."""

    def __init__(self, inner: InputStrategy, fbank: str) -> None:
        self.inner = inner
        self.fbank = fbank

    def __call__(self, cuts: CutSet) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.inner(cuts)
        features, lhotse_lens = out[0], out[1]  # (N, T, F), (N,)
        lens = torch.tensor(
            [num_valid_frames(c, self.fbank) for c in cuts], dtype=lhotse_lens.dtype
        )
        for cut, n, m in zip(cuts, lens.tolist(), lhotse_lens.tolist()):
            if n > m:
                raise ValueError(
                    f"Cut {cut.id}: {self.fbank} fbank of {cut.duration} s has {n} frames, but "
                    f"its features hold only {m} (not computed as fbank {self.fbank!r}?)."
                )
        return features, lens


class BatchLoadError(RuntimeError):
    """The features (or audio) of a batch could not be read; ``cut_ids`` names its cuts."""

    def __init__(self, cut_ids: list[str], reason: str) -> None:
        self.cut_ids = cut_ids
        super().__init__(f"Reading the features of cuts {cut_ids[:10]} failed: {reason}")


def _features(cuts: CutSet, input_strategy: InputStrategy) -> dict[str, Any]:
    try:
        out = input_strategy(cuts)
    except Exception as e:  # noqa: BLE001 - a truncated .lca, a missing file: name the cuts
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BatchLoadError([c.id for c in cuts], f"{type(e).__name__}: {first_line}") from e
    features, feature_lens = out[0], out[1]
    return {
        "features": features.float(),
        "feature_lens": feature_lens.to(torch.int64),
        "durations": torch.tensor([c.duration for c in cuts], dtype=torch.float32),
        "cut_ids": [c.id for c in cuts],
    }


class PretrainDataset(torch.utils.data.Dataset):
    """Unlabelled speech for pre-training: a CutSet -> ``features``, ``feature_lens``, ``cut_ids``."""

    def __init__(self, input_strategy: InputStrategy | None = None) -> None:
        self.input_strategy = (
            input_strategy if input_strategy is not None else PrecomputedFeatures()
        )

    def __getitem__(self, cuts: CutSet) -> dict[str, Any]:
        return _features(cuts.sort_by_duration(ascending=False), self.input_strategy)


def cut_text(cut: Any) -> str:
    """The transcript of a cut: its supervisions' texts joined by spaces."""
    texts = [s.text for s in cut.supervisions if s.text]
    if not texts:
        raise ValueError(f"Cut {cut.id}: expected a supervision with text, but it has none.")
    return " ".join(texts)


class AsrDataset(torch.utils.data.Dataset):
    """Labelled speech: ``PretrainDataset``'s batch plus ``texts`` and ``tokens``; SpecAugment if given."""

    def __init__(
        self,
        tokenize: Callable[[str], list[int]],
        input_strategy: InputStrategy | None = None,
        spec_augment: SpecAugment | None = None,
    ) -> None:
        self.tokenize = tokenize
        self.input_strategy = (
            input_strategy if input_strategy is not None else PrecomputedFeatures()
        )
        self.spec_augment = spec_augment

    def __getitem__(self, cuts: CutSet) -> dict[str, Any]:
        cuts = cuts.sort_by_duration(ascending=False)
        batch = _features(cuts, self.input_strategy)
        if self.spec_augment is not None:
            lens = batch["feature_lens"]
            # warp only inside each utterance: (N, 3) rows of (index, start frame, num frames)
            segments = torch.stack(
                [torch.arange(len(lens)), torch.zeros_like(lens), lens], dim=1
            ).to(torch.int32)
            batch["features"] = self.spec_augment(batch["features"], segments)
        batch["texts"] = [cut_text(c) for c in cuts]
        batch["tokens"] = [self.tokenize(t) for t in batch["texts"]]
        return batch


def create_spec_augment(
    enabled: bool,
    *,
    time_warp_factor: int = 80,
    num_feature_masks: int = 2,
    features_mask_size: int = 27,
    num_frame_masks: int = 10,
    frames_mask_size: int = 100,
    max_frames_mask_fraction: float = 0.15,
) -> SpecAugment | None:
    """Lhotse SpecAugment; the defaults are icefall's LibriSpeech settings.

    Time warp of up to ``time_warp_factor`` frames (0: none; Lhotse skips utterances of at most
    2 x factor + 1 frames), ``num_feature_masks`` mel masks of <= ``features_mask_size`` bins, and
    time masks that cover at most ``max_frames_mask_fraction`` of each utterance (> 0): at most
    ``num_frame_masks`` masks of <= ``frames_mask_size`` frames, fewer and shorter on short
    utterances (a 2.7 s utterance, 270 frames, gets 1 mask of <= 40 frames at the defaults).
    """
    if not enabled:
        return None
    for name, value, least in (("time_warp_factor", time_warp_factor, 0),
                               ("num_feature_masks", num_feature_masks, 0),
                               ("features_mask_size", features_mask_size, 0),
                               ("num_frame_masks", num_frame_masks, 1),  # Lhotse divides by
                               ("frames_mask_size", frames_mask_size, 1)):  # both  # fmt: skip
        if value < least:
            raise ValueError(f"SpecAugment {name} must be >= {least}, but is {value} instead.")
    if not 0.0 < max_frames_mask_fraction < 1.0:
        raise ValueError(
            "SpecAugment max_frames_mask_fraction must be in (0, 1), "
            f"but is {max_frames_mask_fraction} instead."
        )
    return SpecAugment(
        time_warp_factor=time_warp_factor,
        num_feature_masks=num_feature_masks,
        features_mask_size=features_mask_size,
        num_frame_masks=num_frame_masks,
        frames_mask_size=frames_mask_size,
        max_frames_mask_fraction=max_frames_mask_fraction,
        p=0.9,
    )
