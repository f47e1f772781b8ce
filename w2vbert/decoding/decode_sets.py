"""Stage 6 library: load a fine-tuned (averaged) model, decode Lhotse test sets, write icefall-style results.

Outputs, under ``<exp_dir>/<decoding_method>/`` for each test set ``<set>``:
``recogs-<set>-<suffix>.txt``, ``errs-<set>-<suffix>.txt``, ``wer-summary-<set>-<suffix>.txt`` and
``results-<set>-<suffix>.json`` (WER, RTF, counts) where ``<suffix>`` is icefall's
(``epoch-30-avg-9-use-averaged-model``, ``-beam-size-4`` for beam search).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from lhotse.dataset import SimpleCutSampler

from w2vbert.checkpoint.selection import CheckpointSelection
from w2vbert.data.datasets import AsrDataset, create_input_strategy
from w2vbert.data.fbank import check_feature_types
from w2vbert.data.sampling import create_dataloader, load_cuts
from w2vbert.data.tokenizer import BpeTokenizer
from w2vbert.decoding.scoring import (
    char_error_rate,
    write_error_stats,
    write_recogs,
    write_wer_summary,
)
from w2vbert.decoding.search import (
    fast_beam_search,
    greedy_search_batch,
    modified_beam_search,
)
from w2vbert.model.chunking import FULL_CONTEXT, check_chunking, chunk_steps
from w2vbert.model.config import streaming_problems
from w2vbert.model.factory import config_from_params, load_transducer
from w2vbert.objectives.rnnt_backend import backend_name
from w2vbert.util.atomic import atomic_write_text
from w2vbert.util.dataclass_args import (
    add_dataclass_arguments,
    dataclass_from_args,
    flag,
)

logger = logging.getLogger(__name__)

METHODS = ("greedy_search", "modified_beam_search", "fast_beam_search")


@dataclass(frozen=True, kw_only=True)
class DecodeConfig:
    exp_dir: Path = flag(Path("exp/finetune"), "Fine-tuning experiment directory.")
    model: CheckpointSelection = flag(
        CheckpointSelection(), "--epoch/--avg/--use-averaged-model/--checkpoint", flag=False
    )
    bpe_model: Path | None = flag(
        None, "Sentencepiece model (default: the one saved in the checkpoint)."
    )
    decoding_method: str = flag("greedy_search", "Search.", choices=METHODS)
    beam_size: int = flag(4, "Beam of modified_beam_search / fast_beam_search.")
    decode_chunk_size: str = flag(
        "-1",
        "Streaming: the encoder's attention chunk, in encoder steps or ms (e.g. 16 or 640ms); "
        "-1 = full context. A size the model was not trained with is a warning.",
    )
    left_context_chunks: int = flag(
        -1, "Streaming: chunks of left context each chunk attends (-1 = all)."
    )
    max_duration: float = flag(300.0, "Seconds of audio per batch.")
    device: str = flag("auto", "auto, cpu or cuda.", choices=("auto", "cpu", "cuda"))
    cuts: tuple[str, ...] = flag(
        (), "Test sets as name=path (Lhotse cuts with features and text).", flag=False
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_dataclass_arguments(parser, cls)
        CheckpointSelection.add_arguments(parser)
        parser.add_argument(
            "--cuts",
            nargs="+",
            required=True,
            metavar="NAME=PATH",
            help=cls.__dataclass_fields__["cuts"].metadata["help"],
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DecodeConfig":
        return dataclass_from_args(
            cls, args, cuts=tuple(args.cuts), model=CheckpointSelection.from_args(args)
        )


def parse_test_sets(specs: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--cuts entries must be name=path, but got {spec!r}.")
        out[name] = Path(path)
    return out


def decode_batches(
    cuts: Any, tokenize: Callable[[str], list[int]], fbank: str, max_duration: float
) -> Iterable[dict[str, Any]]:
    """Stage 6's batches of a test set: its stored features with the valid lengths the model
    reads for fbank kind ``fbank`` (``features`` (N, T, 80), ``feature_lens`` (N,), ``texts``...,
    see :class:`w2vbert.data.datasets.AsrDataset`)."""
    sampler = SimpleCutSampler(cuts, max_duration=max_duration)
    return create_dataloader(AsrDataset(tokenize, create_input_strategy(False, fbank)), sampler)


def _search(
    method: str,
    model: torch.nn.Module,
    enc: torch.Tensor,
    lens: torch.Tensor,
    beam: int,
    unk_id: int | None,
) -> list[list[int]]:
    if method == "greedy_search":
        return greedy_search_batch(model, enc, lens, unk_id=unk_id)
    if method == "modified_beam_search":
        return modified_beam_search(model, enc, lens, beam=beam, unk_id=unk_id)
    return fast_beam_search(model, enc, lens, beam=float(beam))


def check_tokenizer(tokenizer: BpeTokenizer, params: dict[str, Any]) -> BpeTokenizer:
    """``tokenizer`` if it is the one the model was trained with: the same number of pieces and,
    where the checkpoint records them (``params["inputs"]``), the same pieces; else ValueError."""
    if tokenizer.vocab_size != params["vocab_size"]:
        raise ValueError(
            f"BPE model {tokenizer.path} has {tokenizer.vocab_size} pieces, but the model was "
            f"trained with {params['vocab_size']} ({params['bpe_model']}): decode with that one."
        )
    saved = (params.get("inputs") or {}).get("tokenizer")
    if saved is not None and saved["sha256"] != tokenizer.digest():
        raise ValueError(
            f"BPE model {tokenizer.path} has other pieces than the model was trained with "
            f"({saved['source']}, sha256 {saved['sha256'][:12]}; this one's "
            f"{tokenizer.digest()[:12]}): its ids would be read as other words. Decode with the "
            "model's own BPE model, or fine-tune again with this one."
        )
    return tokenizer


@contextmanager
def _reading_cuts(name: str, path: Path) -> Iterator[None]:
    """A truncated or corrupt cuts file is a ValueError naming it (not a bare EOFError)."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error, json.JSONDecodeError) as e:
        raise ValueError(
            f"--cuts {name}={path}: cannot read the cuts ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt (re-run the stage that wrote it). No result of this set was "
            "written."
        ) from e


def decoding_chunks(config: DecodeConfig, params: dict[str, Any]) -> tuple[int, int]:
    """``(chunk_size, left_chunks)`` in encoder steps / chunks from ``--decode-chunk-size`` and
    ``--left-context-chunks``; errors name the option, and a setting the model was not trained
    with (``params["streaming"]``, written by dynamic chunk fine-tuning) is a warning."""
    frame_stride = params["model_config"].get("frame_stride", 4)
    chunk = chunk_steps(config.decode_chunk_size, 10 * frame_stride, option="--decode-chunk-size")
    left = config.left_context_chunks
    check_chunking(FULL_CONTEXT, left, left_option="--left-context-chunks")
    if chunk == FULL_CONTEXT:
        return chunk, left
    trained = params.get("streaming") or {"chunk_sizes": [FULL_CONTEXT], "left_context_chunks": -1}
    if chunk not in trained["chunk_sizes"]:
        logger.warning(
            f"--decode-chunk-size {config.decode_chunk_size} ({chunk} encoder steps): the model "
            "was "
            f"never trained with this chunk size (trained: {trained['chunk_sizes']}, in steps; "
            "-1 = full context); expect a higher error rate."
        )
    if left != trained["left_context_chunks"]:
        logger.warning(
            f"--left-context-chunks {left}: the model was trained with "
            f"{trained['left_context_chunks']} (-1 = all)."
        )
    problems = streaming_problems(config_from_params(params))
    if problems:
        logger.info(
            "The model cannot stream (" + " ".join(problems) + "): its chunked decoding is the "
            "full forward with the chunk mask (a simulation of streaming, not a real one)."
        )
    return chunk, left


def decode_sets(config: DecodeConfig) -> dict[str, dict[str, Any]]:
    """Decode every test set of ``config.cuts``; returns ``{set: results dict}`` (also written as JSON)."""
    if config.decoding_method == "fast_beam_search" and backend_name() != "k2":
        raise ValueError(
            "--decoding-method fast_beam_search needs k2, which is not importable here "
            "(fast_rnnt is used instead); use greedy_search or modified_beam_search."
        )
    test_sets = parse_test_sets(config.cuts)
    state, params = config.model.load(config.exp_dir)
    suffix = config.model.suffix
    if config.decoding_method != "greedy_search":
        suffix += f"-beam-size-{config.beam_size}"
    chunk_size, left_chunks = decoding_chunks(config, params)
    chunks = {}
    if chunk_size != FULL_CONTEXT:
        suffix += f"-chunk-{chunk_size}-left-{left_chunks}"
        chunks = {"chunk_size": chunk_size, "left_chunks": left_chunks}
    device = torch.device(
        "cuda"
        if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    model = load_transducer(state, params).to(device)
    tokenizer = check_tokenizer(BpeTokenizer(config.bpe_model or params["bpe_model"]), params)
    out_dir = Path(config.exp_dir) / config.decoding_method
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    fbank = params["model_config"].get("fbank", "icefall")
    for name, path in test_sets.items():
        cuts = load_cuts(path, f"--cuts {name}")
        with _reading_cuts(name, path):
            check_feature_types(cuts, fbank, f"--cuts {name}={path}")
        dl = decode_batches(cuts, tokenizer, fbank, config.max_duration)
        results, audio, start, non_finite = [], 0.0, time.time(), []
        with torch.inference_mode(), _reading_cuts(name, path):
            for batch in dl:
                enc, lens = model.encoder(
                    batch["features"].to(device), batch["feature_lens"].to(device), **chunks
                )
                finite = torch.isfinite(enc).flatten(1).all(dim=1).tolist()
                non_finite += [c for c, ok in zip(batch["cut_ids"], finite) if not ok]
                hyps = _search(
                    config.decoding_method,
                    model,
                    enc,
                    lens,
                    config.beam_size,
                    tokenizer.sp.unk_id(),
                )
                for cut_id, ref, hyp in zip(batch["cut_ids"], batch["texts"], hyps):
                    results.append((cut_id, ref.split(), tokenizer.sp.decode(hyp).split()))
                audio += float(batch["durations"].sum())
        seconds = time.time() - start
        if non_finite:
            logger.warning(
                f"{name}: {len(non_finite)} utterance(s) gave a non-finite encoder output (NaN/inf "
                f"features?); their hypotheses are empty and count as errors: {non_finite[:10]}"
            )
        write_recogs(out_dir / f"recogs-{name}-{suffix}.txt", results)
        wer = write_error_stats(out_dir / f"errs-{name}-{suffix}.txt", f"{name}-{suffix}", results)
        write_wer_summary(
            out_dir / f"wer-summary-{name}-{suffix}.txt", {config.decoding_method: wer}
        )
        info = {
            "set": name,
            "method": config.decoding_method,
            "suffix": suffix,
            "wer": wer,
            "cer": char_error_rate(results),
            "rtf": seconds / max(audio, 1e-9),
            "decode_seconds": seconds,
            "audio_seconds": audio,
            "num_utterances": len(results),
            "device": str(device),
            "chunk_size": chunk_size,
            "left_context_chunks": left_chunks,
            "step_ms": 10 * params["model_config"].get("frame_stride", 4),
        }
        atomic_write_text(
            out_dir / f"results-{name}-{suffix}.json", json.dumps(info, indent=2) + "\n"
        )
        logger.info(
            f"{name} ({config.decoding_method}, {suffix}): WER {wer:.2f}%, CER {info['cer']:.2f}%, "
            f"RTF {info['rtf']:.4f} "
            f"({len(results)} utterances, {audio:.1f} s of audio); results in {out_dir}"
        )
        summary[name] = info
    return summary
