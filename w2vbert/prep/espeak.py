"""Speech synthesis with the espeak-ng program (Debian package ``espeak-ng``).

A voice is an espeak-ng language file (the accent) plus a variant (``+m3``, ``+f2``,
``+klatt``...). Languages are named by their file (``gmw/en-US``) because some names are
ambiguous: ``-v en-gb+f4`` resolves to a voice that ignores the variant.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass

import numpy as np

ESPEAK_PROGRAM = "espeak-ng"

# espeak-ng voice files of English accents (``espeak-ng --voices=en``, File column).
ACCENTS: tuple[str, ...] = (
    "gmw/en",  # Great Britain
    "gmw/en-US",
    "gmw/en-GB-scotland",
    "gmw/en-GB-x-gbclan",  # Lancaster
    "gmw/en-GB-x-rp",  # Received Pronunciation
    "gmw/en-GB-x-gbcwmd",  # West Midlands
    "gmw/en-029",  # Caribbean
    "gmw/en-US-nyc",
)
# Voice variants (espeak-ng-data/voices/!v); each combination with an accent sounds different.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
)  # fmt: skip


@dataclass(frozen=True, order=True)
class Voice:
    """One espeak-ng voice: an accent file and a variant."""

    accent: str
    """espeak-ng voice file, e.g. ``gmw/en-US``."""
    variant: str
    """espeak-ng variant, e.g. ``m3``, ``f1``, ``klatt``."""

    @property
    def name(self) -> str:
        """The ``-v`` argument of espeak-ng, e.g. ``gmw/en-US+m3``."""
        return f"{self.accent}+{self.variant}"

    @property
    def sex(self) -> str:
        """``F`` for the female variants, ``M`` otherwise (as LibriSpeech's SPEAKERS.TXT)."""
        return "F" if self.variant.startswith("f") else "M"


def all_voices() -> list[Voice]:
    """Every accent x variant combination (8 x 14 = 112 voices), in a fixed order."""
    return [Voice(a, v) for a in ACCENTS for v in VARIANTS]


def require_espeak(program: str = ESPEAK_PROGRAM) -> str:
    """Returns the path of the espeak-ng executable or raises a clear error."""
    exe = shutil.which(program)
    if exe is None:
        raise FileNotFoundError(
            f"Program {program!r} not found on PATH; install it with 'apt-get install espeak-ng'."
        )
    return exe


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decodes a 16-bit PCM mono WAV stream (as written by ``espeak-ng --stdout``).

    espeak-ng writes the RIFF and data sizes as 0xFFFFFFFF when streaming, so everything after
    the ``data`` chunk header is taken as samples.

    Returns:
        samples ``(L,)`` float32 in [-1, 1], and the sampling rate in Hz.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"espeak-ng output is not a WAV stream (first bytes {data[:12]!r})")
    pos, rate, channels, bits = 12, None, None, None
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
        elif tag == b"data":
            if rate is None or channels != 1 or bits != 16:
                raise ValueError(
                    f"espeak-ng output must be 16-bit mono WAV, but has {channels} channel(s) of "
                    f"{bits} bits"
                )
            body = data[pos + 8 :]
            body = body[: len(body) - len(body) % 2]
            return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size + size % 2
    raise ValueError("espeak-ng output has no data chunk")


def synthesize(
    text: str, voice: Voice, *, pitch: int, speed: int, program: str = ESPEAK_PROGRAM
) -> tuple[np.ndarray, int]:
    """Speaks ``text`` with espeak-ng.

    Args:
        text: the words; fed lower-cased, so that upper-case words are not spelled out.
        voice: accent and variant.
        pitch: espeak-ng ``-p``, 0..99 (50 is the voice's default).
        speed: espeak-ng ``-s``, words per minute (175 is the default).

    Returns:
        samples ``(L,)`` float32, and espeak-ng's sampling rate (22050 Hz).
    """
    cmd = [program, "-v", voice.name, "-p", str(pitch), "-s", str(speed), "--stdout", text.lower()]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(
            f"espeak-ng failed (exit {proc.returncode}) for voice {voice.name}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return parse_wav_bytes(proc.stdout)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by zero-padding/truncating the spectrum (ideal low-pass).

    Meant for whole utterances that start and end in silence (the FFT treats the signal as
    periodic). The input is zero-padded to a multiple of ``from_rate / gcd`` samples so that the
    output length is exact, then cut to ``round(L * to_rate / from_rate)``.

    Args:
        samples: ``(L,)`` float signal.
    Returns:
        ``(round(L * to_rate / from_rate),)`` float32.
    """
    if from_rate == to_rate:
        return samples.astype(np.float32)
    g = np.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    num_in = len(samples)
    num_out = int(round(num_in * to_rate / from_rate))
    padded_in = -(-num_in // down) * down
    padded_out = padded_in // down * up
    spec = np.fft.rfft(samples.astype(np.float64), n=padded_in)
    keep = min(len(spec), padded_out // 2 + 1)
    out_spec = np.zeros(padded_out // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spec[:keep]
    out = np.fft.irfft(out_spec, n=padded_out) * (padded_out / padded_in)
    return out[:num_out].astype(np.float32)
