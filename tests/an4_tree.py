"""A small simulated AN4 tree in the real ``an4_raw.bigendian`` layout (no real data needed):
headerless big-endian audio, the training transcript with ``<s>``/``</s>`` markers, the test one
without, and the file lists."""

from __future__ import annotations

import tarfile
from pathlib import Path

from data_fixtures import signal

from w2vbert.prep.an4_layout import write_raw

WORDS = ["RUBOUT", "G", "M", "E", "F", "THREE", "NINE", "YES", "NO", "ENTER", "TWENTY", "P", "I", "T"]
# speaker -> number of utterances; "f"/"m" as AN4's speaker ids
TRAIN_SPEAKERS = {"fabc": 4, "fdef": 3, "mghi": 5, "mjkl": 4, "mmno": 3}
TEST_SPEAKERS = {"fxyz": 2, "mwvu": 2}


def utterance_text(k: int) -> str:
    """A deterministic AN4-like transcript for the k-th utterance."""
    return " ".join(WORDS[(k * 7 + j * 3) % len(WORDS)] for j in range(1 + k % 4))


def make_an4_tree(root: Path, seconds: float = 1.2) -> dict[str, tuple[str, Path]]:
    """Writes ``root/an4/{etc,wav}``; returns ``{utterance id: (text, raw path)}``."""
    an4 = Path(root) / "an4"
    (an4 / "etc").mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[str, Path]] = {}
    k = 0
    for name, wav_dir, speakers, marked in [
        ("an4_train", "an4_clstk", TRAIN_SPEAKERS, True),
        ("an4_test", "an4test_clstk", TEST_SPEAKERS, False),
    ]:
        trans, fileids = [], []
        for spk, n in speakers.items():
            for i in range(n):
                utt = f"an{100 + k}-{spk}-b"
                text = utterance_text(k)
                raw = an4 / "wav" / wav_dir / spk / f"{utt}.raw"
                write_raw(raw, signal(seconds + 0.1 * (k % 3), seed=k))
                trans.append(f"<s> {text} </s> ({utt})" if marked else f"{text} ({utt})")
                fileids.append(f"{wav_dir}/{spk}/{utt}")
                out[utt] = (text, raw)
                k += 1
        (an4 / "etc" / f"{name}.transcription").write_text("\n".join(trans) + "\n")
        (an4 / "etc" / f"{name}.fileids").write_text("\n".join(fileids) + "\n")
    (an4 / "README").write_text("simulated AN4 tree for tests\n")
    return out


def pack(root: Path, archive: Path) -> Path:
    """``root/an4`` as a .tar.gz whose top directory is ``an4/`` (as CMU's archive)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(Path(root) / "an4", arcname="an4")
    return archive
