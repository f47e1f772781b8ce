"""The recipe's fbank definitions, shared by stage 2 (stored features) and on-the-fly features.

Two kinds (``W2VBertConfig.fbank`` names the one a model was trained on), both 80-dim log-mel,
25 ms window, 10 ms shift, computed by kaldifeat through Lhotse:

- ``"icefall"`` (Lhotse's ``KaldifeatFbank``, type ``kaldifeat-fbank``): the options icefall uses
  and Lhotse's own ``Fbank`` defaults to: dither 0, snip_edges False, low_freq 20 Hz, high_freq
  -400 (Nyquist - 400 Hz), povey window, pre-emphasis 0.97, on audio in [-1, 1] as Lhotse loads
  it. (``kaldifeat.FbankOptions()`` alone differs: snip_edges True, high_freq 0, 23 bins.)
- ``"w2v-bert-2.0"`` (:class:`W2vBert2Fbank`, type ``w2v-bert-2.0-fbank``): what w2v-BERT 2.0 was
  trained on, as transformers' ``SeamlessM4TFeatureExtractor`` / fairseq2's
  ``WaveformToFbankConverter(waveform_scale=2**15)`` compute it: samples scaled to the 16-bit
  range (x 32768), snip_edges True (no frame beyond the audio), low_freq 20 Hz, high_freq
  Nyquist (8 kHz), povey window, pre-emphasis 0.97, DC offset removed, dither 0, power spectrum,
  log floor float32 eps. Its per-utterance normalisation (zero mean, unit unbiased variance per
  bin) is the model's front end, not part of the stored features.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from lhotse import KaldifeatFbank, KaldifeatFbankConfig
from lhotse.features.base import register_extractor
from lhotse.features.kaldifeat import KaldifeatFrameOptions, KaldifeatMelOptions
from lhotse.utils import compute_num_frames, compute_num_samples

NUM_MEL_BINS = 80
SAMPLING_RATE = 16000
FRAME_SHIFT = 0.01  # seconds


FBANK_KINDS = ("icefall", "w2v-bert-2.0")
INT16_SCALE = 32768.0

STORAGE_TICK_POWER = {"icefall": -5, "w2v-bert-2.0": -13}
"""Stage 2 stores fbank with lilcom rounded to multiples of ``2 ** tick_power``. ``icefall``:
Lhotse's default (-5, max error 0.016; its models train on those values). ``w2v-bert-2.0``: -13
(max error 6e-5), because the released model was trained on exact features and decodes the
extractor's (sherpa-onnx's) exact ones; -5 changed the outputs of a random encoder of its width
by up to 0.16 (tests/test_w2v_bert_2_features.py), -13 by 5e-4. It costs ~1 byte per value more
(1.4 -> 2.4 bytes per value on the test audio)."""


@register_extractor
class W2vBert2Fbank(KaldifeatFbank):
    """kaldifeat fbank of samples scaled to the 16-bit range (w2v-BERT 2.0's features).

    With snip_edges True, N samples give ``1 + (N - 400) // 160`` frames
    (:func:`snip_edges_num_frames`), 2 fewer than Lhotse's ``(N + 80) // 160`` for any
    N >= 400, and Lhotse's manifests require its count. So :meth:`extract` (what stage 2 stores
    and ``OnTheFlyFeatures`` computes) appends 2 filler frames, per bin ``mean + std`` and
    ``mean - std`` (unbiased std, which keep both the mean and the unbiased variance). The model
    never reads them: the recipe's input strategy
    (:func:`w2vbert.data.datasets.create_input_strategy`) gives it :func:`num_valid_frames`,
    the extractor's own count, as the valid length, so the fillers are padding (their values
    matter only to readers outside the recipe that take Lhotse's count: for those they keep the
    per-utterance normalisation of the real frames exact). :meth:`extract_exact` gives the
    frames alone (what ``SeamlessM4TFeatureExtractor`` and sherpa-onnx compute).
    """

    name = "w2v-bert-2.0-fbank"
    config_type = KaldifeatFbankConfig

    def extract_exact(self, samples, sampling_rate: int):
        """The snip_edges frames only: (T, 80) per input (as :meth:`extract`'s input form)."""
        if isinstance(samples, (list, tuple)):
            samples = [x * INT16_SCALE for x in samples]
        else:
            samples = samples * INT16_SCALE
        return super().extract(samples, sampling_rate)

    def extract(self, samples, sampling_rate: int):  # type: ignore[override]
        # extract_batch calls extract (with a list), so padding here covers both
        feats = self.extract_exact(samples, sampling_rate)
        if isinstance(feats, list):
            return [_pad_to_lhotse(f, x.shape[-1]) for f, x in zip(feats, samples)]
        return _pad_to_lhotse(feats, samples.shape[-1])


def _pad_to_lhotse(feats, num_samples: int):
    """Append frames up to Lhotse's frame count, keeping each bin's mean and unbiased variance."""
    target = (num_samples + 80) // 160
    missing = target - feats.shape[0]
    if missing <= 0:
        return feats
    as_numpy = isinstance(feats, np.ndarray)
    x = torch.from_numpy(feats) if as_numpy else feats
    if x.shape[0] >= 2 and missing == 2:
        mean, std = x.mean(dim=0, keepdim=True), x.std(dim=0, keepdim=True)
        extra = torch.cat((mean + std, mean - std))
    elif x.shape[0] >= 1:  # (not reached for N >= 400) repeat the last frame
        extra = x[-1:].expand(missing, -1)
    else:  # shorter than one window
        extra = torch.full((missing, NUM_MEL_BINS), float(np.log(np.finfo(np.float32).eps)))
    x = torch.cat((x, extra.to(x.dtype)))
    return x.numpy() if as_numpy else x


def snip_edges_num_frames(num_samples: int, sampling_rate: int = SAMPLING_RATE) -> int:
    """Frames of a 25 ms window every 10 ms that fit inside ``num_samples`` (kaldifeat with
    snip_edges True): ``1 + (N - 400) // 160`` at 16 kHz, 0 below one window."""
    window, shift = round(0.025 * sampling_rate), round(FRAME_SHIFT * sampling_rate)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def num_valid_frames(cut, kind: str) -> int:
    """Fbank frames of ``cut`` the model reads, for fbank ``kind``: ``"icefall"``, Lhotse's count
    (the cut's stored features, else ``(N + 80) // 160`` of its duration); ``"w2v-bert-2.0"``,
    the extractor's own count :func:`snip_edges_num_frames` of the cut's samples (stored and
    on-the-fly features hold 2 filler frames more, see :class:`W2vBert2Fbank`)."""
    _check_kind(kind)
    if kind == "w2v-bert-2.0":
        rate = cut.sampling_rate
        return snip_edges_num_frames(compute_num_samples(cut.duration, rate), rate)
    if cut.has_features and cut.num_frames is not None:
        return int(cut.num_frames)
    return compute_num_frames(cut.duration, FRAME_SHIFT, cut.sampling_rate)


def _check_kind(kind: str) -> None:
    if kind not in FBANK_KINDS:
        raise ValueError(f"`fbank` must be one of {list(FBANK_KINDS)}, but is {kind!r} instead.")


def fbank_config(device: str = "cpu", kind: str = "icefall") -> KaldifeatFbankConfig:
    """The Lhotse config of fbank ``kind`` (see the module docstring)."""
    _check_kind(kind)
    w2v2 = kind == "w2v-bert-2.0"
    return KaldifeatFbankConfig(
        frame_opts=KaldifeatFrameOptions(
            sampling_rate=SAMPLING_RATE,
            frame_shift=FRAME_SHIFT,
            frame_length=0.025,
            dither=0.0,
            snip_edges=w2v2,
        ),
        mel_opts=KaldifeatMelOptions(
            num_bins=NUM_MEL_BINS, low_freq=20.0, high_freq=0.0 if w2v2 else -400.0
        ),
        device=device,
    )


def storage_tick_power(kind: str) -> int:
    """Lilcom precision stage 2 stores fbank ``kind`` with (:data:`STORAGE_TICK_POWER`)."""
    _check_kind(kind)
    return STORAGE_TICK_POWER[kind]


def fbank_extractor(device: str = "cpu", kind: str = "icefall") -> KaldifeatFbank:
    """A Lhotse feature extractor computing fbank ``kind``: ``(T, 80)`` per cut."""
    config = fbank_config(device, kind)
    return W2vBert2Fbank(config) if kind == "w2v-bert-2.0" else KaldifeatFbank(config)


_ACCEPTED_TYPES = {"icefall": ("kaldifeat-fbank", "kaldi-fbank"), "w2v-bert-2.0": (W2vBert2Fbank.name,)}
"""Stored feature types each kind accepts: Lhotse's own ``Fbank`` (``kaldi-fbank``) has the
icefall options too."""


def check_feature_types(cuts: Iterable, kind: str, source: str, limit: int = 100) -> None:
    """Raise ``ValueError`` naming both kinds when the first ``limit`` cuts with stored features
    were not computed as fbank ``kind`` (the model's ``fbank``)."""
    _check_kind(kind)
    accepted = _ACCEPTED_TYPES[kind]
    by_type = {t: k for k, types in _ACCEPTED_TYPES.items() for t in types}
    for i, cut in enumerate(cuts):
        if i >= limit:
            break
        features = getattr(cut, "features", None)
        if features is None or features.type in accepted:
            continue
        made = by_type.get(features.type, "unknown")
        raise ValueError(
            f"{source}: cut {cut.id} has features of type {features.type!r} (fbank {made!r}), "
            f"but the model expects fbank {kind!r} (type {accepted[0]!r}). Compute its features "
            f"with stage 2's --fbank {kind}, or train/decode with on-the-fly features."
        )
