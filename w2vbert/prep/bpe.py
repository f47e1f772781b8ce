"""Stage 3: a sentencepiece unigram model of the labelled training transcripts.

Writes into ``lang_dir``: ``transcript_words.txt`` (one transcript per line), ``tokens.txt``
(``<symbol> <id>`` per line) and ``bpe.model`` (written last, the stage's completion mark).
Ids as icefall's: ``<blk>`` = 0 and ``<sos/eos>`` = 1 (user-defined symbols), ``<unk>`` = 2,
no bos/eos pieces.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
from lhotse import load_manifest_lazy

from w2vbert.prep.compute_features import is_speed_perturbed
from w2vbert.util.atomic import atomic_output, partial_path, remove_stale_partials

logger = logging.getLogger(__name__)

BLANK, SOS_EOS, UNK = "<blk>", "<sos/eos>", "<unk>"


def transcripts_from_manifests(paths: Sequence[Path]) -> list[str]:
    """Supervision texts of Lhotse cuts or supervisions manifests, in file order (speed-perturbed
    copies of cuts left out)."""
    texts = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Transcript manifest {path} does not exist")
        for item in load_manifest_lazy(path):
            if is_speed_perturbed(item.id):
                continue  # the same text as the original cut
            supervisions = getattr(item, "supervisions", [item])
            for sup in supervisions:
                if sup.text is None or not sup.text.strip():
                    raise ValueError(f"{path}: {sup.id} has no transcript text")
                texts.append(" ".join(sup.text.split()))
    return texts


def transcripts_from_text(paths: Sequence[Path]) -> list[str]:
    """Non-empty lines of plain text files."""
    texts = []
    for path in paths:
        texts.extend(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    return texts


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines))


def train_bpe(
    transcripts: Sequence[str], lang_dir: Path, vocab_size: int, *, force: bool = False
) -> Path:
    """Trains the unigram model; returns the path of ``bpe.model``.

    Raises ValueError when ``vocab_size`` is larger than the transcripts allow (the message
    gives sentencepiece's limit).
    """
    lang_dir = Path(lang_dir)
    model_path = lang_dir / "bpe.model"
    if model_path.is_file() and (lang_dir / "tokens.txt").is_file() and not force:
        logger.info("%s exists, skipping", model_path)
        return model_path
    if not transcripts:
        raise ValueError("No transcripts to train the BPE model on")
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4 (3 special symbols + 1), but is {vocab_size}")
    lang_dir.mkdir(parents=True, exist_ok=True)
    # Forced: a run killed between writing tokens.txt and bpe.model must not leave the old model
    # beside the new tokens looking finished.
    model_path.unlink(missing_ok=True)
    words_path = lang_dir / "transcript_words.txt"
    _write_lines(words_path, transcripts)

    for name in ("unigram.model", "unigram.vocab"):  # left by a killed run
        remove_stale_partials(lang_dir / name)
    prefix = partial_path(lang_dir / "unigram")
    try:
        spm.SentencePieceTrainer.train(
            input=str(words_path),
            model_prefix=str(prefix),
            model_type="unigram",
            vocab_size=vocab_size,
            character_coverage=1.0,
            input_sentence_size=100_000_000,
            user_defined_symbols=[BLANK, SOS_EOS],
            unk_id=2,
            bos_id=-1,
            eos_id=-1,
            num_threads=min(4, os.cpu_count() or 1),
            minloglevel=1,
        )
    except RuntimeError as e:
        limit = re.search(r"value <= (\d+)", str(e))
        if limit:
            raise ValueError(
                f"vocab_size {vocab_size} is too large for the {len(transcripts)} transcripts of "
                f"{words_path}: sentencepiece allows at most {limit.group(1)}"
            ) from e
        raise
    finally:
        Path(f"{prefix}.vocab").unlink(missing_ok=True)
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    ids = {s: sp.piece_to_id(s) for s in (BLANK, SOS_EOS, UNK)}
    if ids != {BLANK: 0, SOS_EOS: 1, UNK: 2}:
        raise RuntimeError(f"Unexpected special symbol ids {ids} in {prefix}.model")
    _write_lines(
        lang_dir / "tokens.txt", (f"{sp.id_to_piece(i)} {i}" for i in range(sp.get_piece_size()))
    )
    os.replace(f"{prefix}.model", model_path)
    logger.info(
        "BPE: %d pieces from %d transcripts -> %s, %s",
        sp.get_piece_size(),
        len(transcripts),
        model_path,
        lang_dir / "tokens.txt",
    )
    return model_path
