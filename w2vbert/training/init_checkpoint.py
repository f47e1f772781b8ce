"""``--init-from``: what pre-training and fine-tuning start from, in this recipe's checkpoint layout.

Accepted: this recipe's checkpoints (``epoch-N.pt``, ``checkpoint-N.pt``, averaged models,
``w2vbert.convert`` output), a Hugging Face ``Wav2Vec2BertModel`` directory (as
``huggingface-cli download facebook/w2v-bert-2.0 --local-dir DIR`` leaves it), a hub id
``hf:facebook/w2v-bert-2.0`` (downloaded; needs internet access), or a fairseq/fairseq2
``conformer_shaw.pt``. External sources are converted in memory by
:mod:`w2vbert.model.w2v_bert_2`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch

from w2vbert.checkpoint.files import load_checkpoint
from w2vbert.model.config import W2VBertConfig
from w2vbert.model.w2v_bert_2 import HF_PREFIX, as_checkpoint, from_fairseq, is_hf_source, load_hf

logger = logging.getLogger(__name__)


def init_source_exists(source: str) -> bool:
    """A hub id, an existing directory or an existing file."""
    return source.startswith(HF_PREFIX) or Path(source).exists()


@functools.lru_cache(maxsize=1)
def load_init_checkpoint(source: str) -> dict[str, Any]:
    """``{"model", "params", ...}`` of ``source`` (cached: the config and the weights are read once
    per process)."""
    if not init_source_exists(source):
        raise FileNotFoundError(f"--init-from {source} does not exist.")
    if is_hf_source(source):
        return _converted(source, "huggingface", *load_hf(source))
    ckpt = load_checkpoint(source)  # read once, then told apart: ours carry params
    if isinstance(ckpt, dict) and "params" not in ckpt and "model" in ckpt:
        return _converted(source, "fairseq", *from_fairseq(ckpt, source))
    if "model" not in ckpt or "model_config" not in ckpt.get("params", {}):
        raise ValueError(
            f"--init-from {source} must hold 'model' and params['model_config'], "
            f"but has keys {sorted(ckpt)}."
        )
    return ckpt


def _converted(
    source: str, fmt: str, config: W2VBertConfig, state: dict[str, torch.Tensor]
) -> dict[str, Any]:
    logger.info(f"--init-from {source}: a {fmt} checkpoint, {len(state)} tensors converted")
    return as_checkpoint(config, state, fmt, source)
