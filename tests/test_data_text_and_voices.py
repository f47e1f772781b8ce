"""Sentence normalisation, espeak-ng voices/WAV parsing and the FFT resampler."""

import shutil
import struct

import numpy as np
import pytest

from w2vbert.prep.espeak import Voice, all_voices, parse_wav_bytes, resample, synthesize
from w2vbert.prep.text_sources import (
    collect_sentences,
    fortune_sentences,
    normalize_sentence,
    split_sentences,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A visit to a strange place will bring fresh work.", "A VISIT TO A STRANGE PLACE WILL BRING FRESH WORK"),
        ("Don't 'panic', said the long-forgotten guide!", "DON'T PANIC SAID THE LONG FORGOTTEN GUIDE"),
        ("There were 12 apostles in the room today.", None),  # digit
        ("Send mail to root@localhost right now please.", None),  # symbol
        ("The caf\u00e9 was open all night long again.", None),  # non-ASCII
        ("Too short here.", None),
        (" ".join(["word"] * 26), None),
    ],
)  # fmt: skip
def test_normalize_sentence_upper_cases_and_drops_digits_symbols_and_bad_lengths(raw, expected):
    assert normalize_sentence(raw) == expected


def test_split_sentences_splits_at_end_punctuation_followed_by_space():
    assert split_sentences("One two. Three: four;  five?\nsix 3.5 seven") == [
        "One two.",
        "Three:",
        "four;",
        "five?",
        "six 3.5 seven",
    ]


def test_fortune_files_are_parsed_without_attribution_lines(tmp_path):
    (tmp_path / "quotes").write_text(
        "The early bird gets the worm every single day.\n\t\t-- Some Person\n%\n"
        "A second fortune with enough words in it here.\n%\n"
    )
    (tmp_path / "quotes.dat").write_bytes(b"\x00\x01")
    got = collect_sentences(fortune_sentences(tmp_path))
    assert got == [
        "A SECOND FORTUNE WITH ENOUGH WORDS IN IT HERE",
        "THE EARLY BIRD GETS THE WORM EVERY SINGLE DAY",
    ]


def test_fortune_dir_missing_raises_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(fortune_sentences(tmp_path / "nowhere"))


def test_voices_are_112_distinct_accent_variant_pairs_with_sex():
    voices = all_voices()
    assert len(voices) == len(set(voices)) == 112
    assert Voice("gmw/en-US", "f2").sex == "F" and Voice("gmw/en", "klatt").sex == "M"
    assert Voice("gmw/en-US", "m3").name == "gmw/en-US+m3"


def _wav(samples: np.ndarray, rate: int, streaming: bool) -> bytes:
    body = samples.astype("<i2").tobytes()
    size = 0xFFFFFFFF if streaming else len(body)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", size) + b"WAVE" + fmt + b"data" + struct.pack("<I", size) + body
    )


@pytest.mark.parametrize("streaming", [False, True])
def test_parse_wav_bytes_reads_streamed_and_sized_headers(streaming):
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    samples, rate = parse_wav_bytes(_wav(pcm, 22050, streaming))
    assert rate == 22050
    np.testing.assert_allclose(samples, pcm / 32768.0)


def test_parse_wav_bytes_rejects_non_wav():
    with pytest.raises(ValueError, match="not a WAV"):
        parse_wav_bytes(b"hello world, not audio")


def test_resample_matches_the_same_tone_sampled_at_the_target_rate():
    # A 440 Hz tone under a Hann window (silent ends, as espeak-ng's output).
    def tone(rate):
        n = int(round(0.5 * rate))
        t = np.arange(n) / rate
        return np.sin(2 * np.pi * 440 * t) * np.hanning(n)

    got = resample(tone(22050), 22050, 16000)
    want = tone(16000)
    assert len(got) == len(want) == 8000
    assert np.abs(got - want).max() < 1e-3


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_synthesis_differs_between_variants_of_one_accent():
    a, rate = synthesize("hello there", Voice("gmw/en-GB-x-rp", "m1"), pitch=50, speed=175)
    b, _ = synthesize("hello there", Voice("gmw/en-GB-x-rp", "f3"), pitch=50, speed=175)
    assert rate == 22050 and 0.3 < len(a) / rate < 3.0
    assert len(a) != len(b) or not np.array_equal(a, b)
