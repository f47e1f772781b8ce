"""The recipe's one fbank definition, shared by stage 2 (stored features) and on-the-fly features.

80-dim log-mel filterbank, 25 ms window, 10 ms shift, computed by kaldifeat through Lhotse's
``KaldifeatFbank`` with the options icefall uses and Lhotse's own ``Fbank`` defaults to:
dither 0, snip_edges False, low_freq 20 Hz, high_freq -400 (Nyquist - 400 Hz), povey window,
pre-emphasis 0.97. (``kaldifeat.FbankOptions()`` alone differs: snip_edges True, high_freq 0,
23 bins.) Input is 16 kHz audio scaled to [-1, 1] as Lhotse loads it.
"""

from __future__ import annotations

from lhotse import KaldifeatFbank, KaldifeatFbankConfig
from lhotse.features.kaldifeat import KaldifeatFrameOptions, KaldifeatMelOptions

NUM_MEL_BINS = 80
SAMPLING_RATE = 16000
FRAME_SHIFT = 0.01  # seconds


def fbank_config(device: str = "cpu") -> KaldifeatFbankConfig:
    """The Lhotse config of the recipe's fbank (see the module docstring)."""
    return KaldifeatFbankConfig(
        frame_opts=KaldifeatFrameOptions(
            sampling_rate=SAMPLING_RATE,
            frame_shift=FRAME_SHIFT,
            frame_length=0.025,
            dither=0.0,
            snip_edges=False,
        ),
        mel_opts=KaldifeatMelOptions(num_bins=NUM_MEL_BINS, low_freq=20.0, high_freq=-400.0),
        device=device,
    )


def fbank_extractor(device: str = "cpu") -> KaldifeatFbank:
    """A Lhotse feature extractor computing the recipe's fbank: ``(T, 80)`` per cut."""
    return KaldifeatFbank(fbank_config(device))
