"""CMU AN4 (``an4_raw.bigendian``): its transcripts, file lists and headerless big-endian audio.

The distribution (http://www.speech.cs.cmu.edu/databases/an4/) unpacks to::

    an4/etc/an4_train.transcription   <s> RUBOUT G M E F THREE NINE </s> (an251-fash-b)
    an4/etc/an4_train.fileids         an4_clstk/fash/an251-fash-b
    an4/etc/an4_test.transcription    RUBOUT G M E F THREE NINE (an406-fcaw-b)   (no markers)
    an4/etc/an4_test.fileids          an4test_clstk/fcaw/an406-fcaw-b
    an4/wav/<fileid>.raw              16 kHz mono 16-bit signed PCM, no header, BIG-endian

(the README inside says little-endian: read that way the audio is noise). Utterance ids are
``<prompt>-<speaker>-<mic>``. Everything unexpected (a line of neither transcript form, a
repeated id, an id without a file list entry or an audio file, audio without a transcript, a
speaker that differs from the audio's directory, an odd byte count) is a problem naming the file
and line; :mod:`w2vbert.prep.an4_manifests` turns them into one :class:`CorpusError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vbert.prep.corpus_problems import CorpusError, Problems

URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_raw.bigendian.tar.gz"
SAMPLING_RATE = 16000
RAW_DTYPE = np.dtype(">i2")  # 16-bit signed, big-endian
SETS = {"train": "an4_train", "test": "an4_test"}  # AN4 set -> the stem of its etc/ files

_WORDS = r"[A-Z0-9']+(?: [A-Z0-9']+)*"
# "<s> WORDS </s> (id)" (training file) or "WORDS (id)" (test file); blanks around are tolerated
_LINE = re.compile(rf"(?:<s> (?P<marked>{_WORDS}) </s>|(?P<plain>{_WORDS})) \((?P<id>[a-z0-9]+-[a-z0-9]+-[a-z0-9]+)\)")
_FILEID = re.compile(r"(?P<dir>[a-z0-9_]+)/(?P<spk>[a-z0-9]+)/(?P<id>[a-z0-9]+-[a-z0-9]+-[a-z0-9]+)")


@dataclass(frozen=True)
class An4Utterance:
    """One utterance: its id, speaker, transcript (markers and id stripped) and raw audio file."""

    id: str
    speaker: str
    text: str
    audio: Path  # an4/wav/<dir>/<speaker>/<id>.raw


def read_raw(path: Path) -> np.ndarray:
    """The samples of a headerless big-endian 16-bit file, ``(L,)`` int16 in native byte order;
    raises CorpusError naming ``path`` for an odd byte count or no samples."""
    data = Path(path).read_bytes()
    if len(data) % 2:
        raise CorpusError(f"{path}: {len(data)} bytes, not a whole number of 16-bit samples")
    if not data:
        raise CorpusError(f"{path}: empty audio (0 samples)")
    return np.frombuffer(data, dtype=RAW_DTYPE).astype(np.int16)


def write_raw(path: Path, samples: np.ndarray) -> None:
    """Writes ``samples`` ``(L,)`` (int16, or float in [-1, 1) scaled by 2^15) as AN4 does:
    headerless big-endian 16-bit PCM (the inverse of :func:`read_raw`; for test corpora)."""
    samples = np.asarray(samples)
    if samples.dtype.kind == "f":
        samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(samples.astype(RAW_DTYPE).tobytes())


def parse_transcription_line(line: str, where: str) -> tuple[str, str]:
    """``(utterance id, words)`` of one line of an ``.transcription`` file; raises CorpusError
    naming ``where`` (``file:line``) for anything but the two forms AN4 uses."""
    m = _LINE.fullmatch(line.strip())
    if m is None:
        raise CorpusError(
            f"{where}: expected '<s> WORDS </s> (utterance-id)' or 'WORDS (utterance-id)' with "
            f"upper-case words, got {line.rstrip(chr(10))!r}"
        )
    return m["id"], m["marked"] or m["plain"]


def _numbered_lines(path: Path) -> list[tuple[str, str]]:
    """``[(file:line, line)]`` of a text file; raises CorpusError when it is missing."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing (is this an an4_raw.bigendian tree?)")
    with open(path, encoding="ascii", errors="replace") as f:
        return [(f"{path}:{n}", line) for n, line in enumerate(f, start=1)]


def read_an4_set(corpus_dir: Path, name: str, problems: Problems) -> list[An4Utterance]:
    """The utterances of AN4 set ``name`` (``train`` or ``test``) in file-list order; every
    problem found is added to ``problems`` (the utterance it concerns is left out)."""
    corpus_dir = Path(corpus_dir)
    stem = SETS[name]
    etc = corpus_dir / "etc"
    texts: dict[str, tuple[str, str]] = {}  # id -> (words, where)
    for where, line in _numbered_lines(etc / f"{stem}.transcription"):
        if not line.strip():
            problems.add(f"{where}: blank line")
            continue
        try:
            utt_id, words = parse_transcription_line(line, where)
        except CorpusError as e:
            problems.add(str(e))
            continue
        if utt_id in texts:
            problems.add(f"{where}: utterance id {utt_id} repeats {texts[utt_id][1]}")
            continue
        texts[utt_id] = (words, where)
    utterances, listed, audio_dirs = [], set(), set()
    for where, line in _numbered_lines(etc / f"{stem}.fileids"):
        m = _FILEID.fullmatch(line.strip())
        if m is None:
            problems.add(f"{where}: expected '<dir>/<speaker>/<utterance-id>', got {line.strip()!r}")
            continue
        utt_id, speaker = m["id"], m["spk"]
        audio = corpus_dir / "wav" / f"{line.strip()}.raw"
        audio_dirs.add(audio.parent.parent)
        if utt_id in listed:
            problems.add(f"{where}: utterance id {utt_id} listed twice")
            continue
        listed.add(utt_id)
        if utt_id.split("-")[1] != speaker:
            problems.add(f"{where}: utterance {utt_id} is not of speaker {speaker} (its directory)")
        elif utt_id not in texts:
            problems.add(f"{where}: utterance {utt_id} has no line in {stem}.transcription")
        elif not audio.is_file():
            problems.add(f"{where}: missing audio file {audio} of utterance {utt_id}")
        else:
            utterances.append(An4Utterance(utt_id, speaker, texts[utt_id][0], audio))
    for utt_id, (_, where) in texts.items():
        if utt_id not in listed:
            problems.add(f"{where}: utterance id {utt_id} has no audio: not in {stem}.fileids")
    for audio_dir in sorted(audio_dirs):
        for raw in sorted(audio_dir.glob("*/*.raw")):
            if raw.stem not in listed:
                problems.add(f"{raw}: audio file without a line in {stem}.fileids")
    return utterances
