"""Chunked attention for streaming: the chunk mask and the checks of the chunk settings.

A streaming encoder cuts its S steps into chunks of ``chunk_size`` steps; a query in chunk c
attends the keys of chunks ``c - left_chunks .. c`` (all earlier chunks with ``left_chunks=-1``),
never a later chunk. ``chunk_size=-1`` is full context (no chunk mask). The numbers are encoder
steps (40 ms with the paper's front end, 20 ms with w2v-BERT 2.0's); :func:`chunk_steps` turns a
setting in ms into steps and refuses one that is not a whole number of steps.

Shapes: S steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

FULL_CONTEXT = -1
"""``chunk_size`` / ``left_chunks`` value meaning "no limit"."""


def check_chunking(
    chunk_size: int,
    left_chunks: int,
    *,
    option: str = "chunk_size",
    left_option: str = "left_chunks",
) -> None:
    """Raise ``ValueError`` unless ``chunk_size`` is >= 1 or -1 and ``left_chunks`` is >= 1 or -1.

    ``option`` and ``left_option`` name the settings in the message (e.g.
    ``--decode-chunk-size``, ``--left-context-chunks``)."""
    if chunk_size != FULL_CONTEXT and chunk_size < 1:
        raise ValueError(
            f"`{option}` must be a positive number of encoder steps or -1 (full context), "
            f"but is {chunk_size} instead."
        )
    if left_chunks != FULL_CONTEXT and left_chunks < 1:
        raise ValueError(
            f"The left context (`{left_option}`) must be a positive number of chunks or -1 (all), "
            f"but is {left_chunks} instead."
        )


def chunk_steps(value: str, step_ms: int, *, option: str) -> int:
    """An encoder-step count from ``"16"`` (steps), ``"640ms"`` or ``"-1"`` (full context).

    Raises ``ValueError`` naming ``option`` when the value is no integer, not positive (and not
    -1), or (in ms) not a whole number of ``step_ms`` steps.
    """
    text = value.strip().lower()
    in_ms = text.endswith("ms")
    try:
        number = int(text[:-2] if in_ms else text)
    except ValueError:
        raise ValueError(
            f"`{option}` must be encoder steps (e.g. 16), milliseconds (e.g. 640ms) or -1, "
            f"but is {value!r} instead."
        ) from None
    if number == FULL_CONTEXT:
        return FULL_CONTEXT
    if number < 1:
        raise ValueError(f"`{option}` must be positive or -1, but is {value!r} instead.")
    if not in_ms:
        return number
    if number % step_ms != 0:
        raise ValueError(
            f"`{option}` must be a whole number of {step_ms} ms encoder steps, but {value!r} is "
            f"{number / step_ms:g} steps."
        )
    return number // step_ms


def parse_chunk_sizes(text: str, step_ms: int, *, option: str) -> tuple[int, ...]:
    """Comma-separated :func:`chunk_steps` values, e.g. ``"16,32,-1"`` or ``"320ms,640ms,-1"``."""
    sizes = tuple(chunk_steps(v, step_ms, option=option) for v in text.split(",") if v.strip())
    if not sizes:
        raise ValueError(f"`{option}` must list at least one chunk size, but is {text!r}.")
    return sizes


def chunk_attention_mask(
    num_steps: int, chunk_size: int, left_chunks: int, device: torch.device | str = "cpu"
) -> Tensor:
    """(S, S) bool, ``True`` where query i may attend key j: ``chunk(j) <= chunk(i)`` and,
    unless ``left_chunks`` is -1, ``chunk(j) >= chunk(i) - left_chunks``."""
    check_chunking(chunk_size, left_chunks)
    chunk = torch.arange(num_steps, device=device) // max(chunk_size, 1)
    if chunk_size == FULL_CONTEXT:
        chunk = torch.zeros_like(chunk)
    diff = chunk.unsqueeze(1) - chunk.unsqueeze(0)  # (S, S): chunk(i) - chunk(j)
    allowed = diff >= 0
    if left_chunks != FULL_CONTEXT:
        allowed &= diff <= left_chunks
    return allowed
