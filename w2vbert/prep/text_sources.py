"""English sentences for the synthetic mini corpus, from Debian's text packages.

Sources (all offline, installed by ``apt-get install fortunes fortunes-min bible-kjv``):

- ``fortunes`` / ``fortunes-min``: plain-text files in ``/usr/share/games/fortunes``, one
  fortune per ``%``-separated block;
- ``bible-kjv-text``: ``/usr/lib/bible.data`` (compressed), read through the ``bible`` program
  of the ``bible-kjv`` package, one verse per line with ``bible -f -l100000``.

Sentences are normalised the way LibriSpeech transcripts look: upper-case words of letters and
inner apostrophes, single spaces, no punctuation. Sentences with digits, symbols or non-ASCII
characters are dropped, not repaired.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Iterator

logger = logging.getLogger(__name__)

DEFAULT_FORTUNE_DIR = Path("/usr/share/games/fortunes")
DEFAULT_BIBLE_PROGRAM = "bible"
# Every verse of the King James Bible, Genesis 1:1 to Revelation 22:21.
_BIBLE_RANGE = "gen1:1-rev22:21"

# Characters a raw sentence may contain; anything else (digits, symbols, tabs inside words,
# non-ASCII) disqualifies the sentence.
_ALLOWED = re.compile(r"^[A-Za-z '.,;:!?\"()\-]+$")
# Sentence ends: . ! ? ; : followed by white space (or the end of the block).
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
# An apostrophe between two letters is part of the word (DON'T); others are quotation marks.
_STRAY_APOSTROPHE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")


def normalize_sentence(raw: str, *, min_words: int = 5, max_words: int = 25) -> str | None:
    """Returns ``raw`` as an upper-case LibriSpeech-style transcript, or None if unusable.

    Unusable: any character other than ASCII letters, white space and ``'.,;:!?"()-``
    (so digits, symbols and non-ASCII text are rejected), or a word count outside
    ``[min_words, max_words]`` after normalisation.
    """
    text = " ".join(raw.split())
    if not text or not _ALLOWED.match(text):
        return None
    text = text.replace("-", " ")
    text = _STRAY_APOSTROPHE.sub(" ", text)
    text = re.sub(r"[.,;:!?\"()]", " ", text)
    words = text.upper().split()
    if not min_words <= len(words) <= max_words:
        return None
    return " ".join(words)


def split_sentences(block: str) -> list[str]:
    """Splits a block of running text into sentences at ``. ! ? ; :`` followed by space."""
    return [s for s in _SENTENCE_END.split(" ".join(block.split())) if s]


def _fortune_blocks(path: Path) -> Iterator[str]:
    """Yields the fortunes of one fortune file, attribution lines (``-- Name``) removed."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() == "%":
            if lines:
                yield "\n".join(lines)
            lines = []
        elif not line.lstrip().startswith("--"):
            lines.append(line)
    if lines:
        yield "\n".join(lines)


def fortune_sentences(fortune_dir: Path = DEFAULT_FORTUNE_DIR) -> Iterator[str]:
    """Yields raw sentences of every plain fortune file in ``fortune_dir`` (sorted by name).

    Skips the ``.dat`` indexes, the ``.u8`` links and the ASCII-art collections.
    """
    fortune_dir = Path(fortune_dir)
    if not fortune_dir.is_dir():
        raise FileNotFoundError(
            f"Fortune directory {fortune_dir} does not exist; install the Debian packages "
            "'fortunes' and 'fortunes-min' or pass another directory."
        )
    for path in sorted(fortune_dir.iterdir()):
        if path.suffix in {".dat", ".u8"} or "art" in path.name or not path.is_file():
            continue
        for block in _fortune_blocks(path):
            yield from split_sentences(block)


def bible_sentences(bible_program: str = DEFAULT_BIBLE_PROGRAM) -> Iterator[str]:
    """Yields raw sentences of the King James Bible through the ``bible`` program."""
    exe = shutil.which(bible_program)
    if exe is None:
        raise FileNotFoundError(
            f"Program {bible_program!r} not found on PATH; install the Debian packages "
            "'bible-kjv' and 'bible-kjv-text'."
        )
    out = subprocess.run(
        [exe, "-f", "-l100000", _BIBLE_RANGE], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        # "Ge1:1 In the beginning God created the heaven and the earth."
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and re.match(r"^[0-9A-Za-z]+\d+:\d+$", parts[0]):
            yield from split_sentences(parts[1])


def collect_sentences(
    raw_sentences: Iterable[str], *, min_words: int = 5, max_words: int = 25
) -> list[str]:
    """Normalises ``raw_sentences`` and returns the usable ones, deduplicated, sorted."""
    unique = set()
    for raw in raw_sentences:
        text = normalize_sentence(raw, min_words=min_words, max_words=max_words)
        if text is not None:
            unique.add(text)
    return sorted(unique)


def load_default_sentences(
    *,
    fortune_dir: Path = DEFAULT_FORTUNE_DIR,
    bible_program: str = DEFAULT_BIBLE_PROGRAM,
    min_words: int = 5,
    max_words: int = 25,
) -> list[str]:
    """All usable sentences of the fortunes and the Bible, deduplicated and sorted."""
    fortunes = collect_sentences(
        fortune_sentences(fortune_dir), min_words=min_words, max_words=max_words
    )
    bible = collect_sentences(
        bible_sentences(bible_program), min_words=min_words, max_words=max_words
    )
    logger.info("Sentences: %d from fortunes, %d from the Bible", len(fortunes), len(bible))
    return sorted(set(fortunes) | set(bible))
