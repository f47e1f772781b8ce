"""What a checkpoint was trained on, by content: its inputs' identities travel with it.

A training checkpoint's ``params["inputs"]`` maps each input to ``{"sha256": ..., "source": ...}``:

- ``tokenizer``: the BPE model's pieces and scores, in id order
  (:meth:`w2vbert.data.tokenizer.BpeTokenizer.digest`);
- ``init``: the weights the model started from (``--init-from``: :func:`state_dict_digest` of the
  tensors loaded);
- ``train_cuts``: the training cuts' ids (and transcripts, for fine-tuning), hashed while the
  start-up scan reads them anyway (absent with ``--no-scan-cuts`` and for Shar shards split by rank).

``source`` (a path, for messages) is never compared: a file re-made at the same path is another
input, and the same content at another path is the same one. Resume compares them
(:func:`changed_inputs`), and so does decoding for the tokenizer.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import torch

INPUT_NAMES = {
    "tokenizer": "the BPE model's pieces",
    "init": "the initial weights (--init-from)",
    "train_cuts": "the training cuts",
}


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (keys in sorted order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def text_digest(lines: Iterable[str]) -> str:
    """sha256 of ``lines``, each ended by a newline."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def input_record(digest: str, source: str) -> dict[str, str]:
    """One entry of ``params["inputs"]``."""
    return {"sha256": digest, "source": source}


def changed_inputs(saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """One line per input whose identity differs between a checkpoint's ``saved`` inputs and
    ``now``'s; inputs recorded on one side only are not compared (an older checkpoint, or a run
    that does not know one, e.g. without the start-up scan)."""
    out = []
    for key in sorted(set(saved or {}) & set(now)):
        old, new = saved[key], now[key]  # type: ignore[index]
        if old["sha256"] != new["sha256"]:
            out.append(
                f"{INPUT_NAMES.get(key, key)} changed: {old['source']} (sha256 "
                f"{old['sha256'][:12]}) when the checkpoint was trained, {new['source']} (sha256 "
                f"{new['sha256'][:12]}) now"
            )
    return out
