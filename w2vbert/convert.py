"""Convert w2v-BERT 2.0 weights into this recipe's checkpoint format.

    huggingface-cli download facebook/w2v-bert-2.0 --local-dir download/w2v-bert-2.0
    python -m w2vbert.convert --source download/w2v-bert-2.0 --out exp/w2v-bert-2.0.pt
    python -m w2vbert.convert --source conformer_shaw.pt --out exp/conformer_shaw.pt
    python -m w2vbert.convert --source hf:facebook/w2v-bert-2.0 --out exp/w2v-bert-2.0.pt

``--source``: a Hugging Face ``Wav2Vec2BertModel`` directory, ``hf:<hub id>`` (downloaded; needs
internet access) or a fairseq/fairseq2 ``conformer_shaw.pt``. The output is a pre-training
checkpoint (``params.kind == "pretrain"``, the w2v-BERT 2.0 model config, ``encoder.*`` and, from
fairseq, the quantizer, projections and MLM head) that ``--init-from`` of ``w2vbert.pretrain`` and
``w2vbert.finetune`` take; they also take the source itself (converting in memory each time).
A source that does not fit is an error listing the missing and unexpected keys.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from w2vbert.model.factory import create_pretraining_model, load_pretraining_weights
from w2vbert.model.w2v_bert_2 import as_checkpoint, load_external
from w2vbert.util.atomic import atomic_torch_save
from w2vbert.util.cli import entry_point_parser
from w2vbert.util.log import run_main, setup_cli_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = entry_point_parser("w2vbert.convert", __doc__)
    p.add_argument("--source", required=True, help="HF directory, hf:<hub id> or conformer_shaw.pt.")
    p.add_argument("--out", type=Path, required=True, help="Checkpoint to write (.pt).")
    p.add_argument("--log-file", type=Path, default=None, help="Log file (default: <out>.log).")
    return p


def convert(source: str, out: Path) -> list[str]:
    """Write ``out``; returns what the source lacked (freshly initialised in the output)."""
    config, state, fmt = load_external(source)
    model = create_pretraining_model(config)  # checks that every tensor fits, fills the rest
    fresh = load_pretraining_weights(model, state, f"{fmt} checkpoint {source}")
    checkpoint = as_checkpoint(config, model.state_dict(), fmt, source)
    checkpoint["params"]["fresh_at_conversion"] = fresh
    atomic_torch_save(checkpoint, out)
    n = sum(v.numel() for k, v in checkpoint["model"].items() if k.startswith("encoder."))
    logger.info(f"Wrote {out}: {fmt} -> recipe checkpoint, encoder {n / 1e6:.1f}M parameters")
    return fresh


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_cli_logging(args.log_file or args.out.with_name(args.out.name + ".log"))
    convert(args.source, args.out)


if __name__ == "__main__":
    run_main(main)
