"""Problems of an input corpus: the error that names them and a counter that keeps only the first
few, so that checking a corpus of any size takes the same memory."""

from __future__ import annotations

MAX_LISTED = 20


class CorpusError(ValueError):
    """The input corpus is malformed; the message names the offending files."""


class Problems:
    """Problems found in a pass over a part: all counted, the first ``MAX_LISTED`` kept."""

    def __init__(self) -> None:
        self.count = 0
        self.listed: list[str] = []

    def add(self, problem: str) -> None:
        """Counts ``problem`` (a message naming the file); keeps it if fewer are listed yet."""
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)

    def __bool__(self) -> bool:
        return self.count > 0

    def __len__(self) -> int:
        return self.count

    def raise_if_any(self, what: str) -> None:
        """Raises CorpusError ``what: N problem(s):`` with the listed ones, if there are any."""
        if not self.count:
            return
        listed = "\n  ".join(self.listed)
        more = self.count - len(self.listed)
        more_text = f"\n  ... and {more} more" if more else ""
        raise CorpusError(f"{what}: {self.count} problem(s):\n  {listed}{more_text}")
