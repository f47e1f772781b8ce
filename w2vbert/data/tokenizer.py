"""The BPE tokenizer of fine-tuning and decoding: a sentencepiece model made by stage 3."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


class BpeTokenizer:
    """Sentencepiece model loaded lazily (so datasets stay picklable for DataLoader workers)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"BPE model {self.path} does not exist (run stage 3, train_bpe)."
            )
        self._sp: Any = None

    @property
    def sp(self) -> Any:
        if self._sp is None:
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        return self._sp

    def __call__(self, text: str) -> list[int]:
        return list(self.sp.encode(text, out_type=int))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_sp": None}

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    def digest(self) -> str:
        """sha256 of the pieces and their scores in id order: equal for the same tokenizer
        wherever its file lies, different for a re-trained one even of the same size."""
        sp = self.sp
        h = hashlib.sha256()
        for i in range(sp.get_piece_size()):
            h.update(f"{sp.id_to_piece(i)}\t{sp.get_score(i)!r}\n".encode())
        return h.hexdigest()
