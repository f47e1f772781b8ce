"""Decoding audio with sherpa-onnx (the exported files) and with the PyTorch model, timed.

Both start from 16 kHz float samples in [-1, 1]. sherpa-onnx computes its own fbank with
``FeatureExtractorConfig``, which can be given every option that differs between the recipe's two
fbank kinds (:mod:`w2vbert.data.fbank`): for ``icefall`` its defaults (dither 0, snip_edges False,
low_freq 20, high_freq -400, samples not rescaled), for ``w2v-bert-2.0`` snip_edges True,
high_freq 0 (Nyquist) and ``normalize_samples=False`` (samples scaled by 32768). The PyTorch side
computes the same fbank with kaldifeat, so both decode the same features.

Shapes: N batch, T fbank frames, L samples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from w2vbert.export.onnx_export import ExportedFiles

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000
METHODS = ("greedy_search", "modified_beam_search")


@dataclass(frozen=True, kw_only=True)
class Utterance:
    """One test utterance: id, (L,) float32 samples at 16 kHz, reference words (may be empty)."""

    id: str
    samples: np.ndarray
    ref: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLING_RATE


@dataclass(kw_only=True)
class DecodeRun:
    """Hypotheses (words per utterance id) of one decoder and how long it took."""

    name: str
    hyps: dict[str, list[str]] = field(default_factory=dict)
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor: decoding seconds per second of audio (features included)."""
        return self.elapsed_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")


def read_tokens(path: Path | str) -> dict[int, str]:
    """``tokens.txt`` (``<symbol> <id>`` per line) -> {id: symbol}."""
    table: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for num, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(
                    f"{path}:{num}: expected '<symbol> <id>', but got {line.strip()!r}."
                )
            table[int(parts[1])] = parts[0]
    return table


def token_ids_to_words(ids: Sequence[int], id_to_symbol: dict[int, str]) -> list[str]:
    """BPE ids -> words: concatenate the pieces, ``▁`` starts a word (as sentencepiece decodes)."""
    return "".join(id_to_symbol[i] for i in ids).replace("\u2581", " ").split()


def load_utterances(manifest: Path | str, max_utterances: int = 0) -> list[Utterance]:
    """Audio of a Lhotse cuts or recordings manifest, downmixed to mono and resampled to 16 kHz.

    Cuts give their supervisions' text as reference; recordings give no reference.
    """
    from lhotse import load_manifest_lazy
    from lhotse.cut import Cut

    items = load_manifest_lazy(manifest)
    if items is None:
        raise ValueError(f"{manifest} is not a Lhotse manifest.")
    utts = []
    for item in items:
        if max_utterances and len(utts) >= max_utterances:
            break
        if isinstance(item, Cut) and not item.has_recording:
            raise ValueError(
                f"Cut {item.id} in {manifest}: expected a recording (audio), but it has none."
            )
        if item.sampling_rate != SAMPLING_RATE:
            item = item.resample(SAMPLING_RATE)
        samples = np.asarray(item.load_audio(), dtype=np.float32)  # (C, L)
        samples = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
        ref: tuple[str, ...] = ()
        if isinstance(item, Cut):
            ref = tuple(" ".join(s.text for s in item.supervisions if s.text).split())
        utts.append(Utterance(id=item.id, samples=np.ascontiguousarray(samples), ref=ref))
    if not utts:
        raise ValueError(f"{manifest}: expected at least one utterance, but it has none.")
    return utts


def _batches(utts: Sequence[Utterance], batch_size: int) -> list[Sequence[Utterance]]:
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, but is {batch_size} instead.")
    return [utts[i : i + batch_size] for i in range(0, len(utts), batch_size)]


def sherpa_feature_config(fbank: str = "icefall"):  # -> sherpa_onnx.FeatureExtractorConfig
    """sherpa-onnx's feature options for fbank kind ``fbank`` (see the module docstring)."""
    import sherpa_onnx

    if fbank == "w2v-bert-2.0":
        return sherpa_onnx.FeatureExtractorConfig(
            sampling_rate=SAMPLING_RATE, feature_dim=80, low_freq=20, high_freq=0, dither=0,
            normalize_samples=False, snip_edges=True,
        )  # fmt: skip
    if fbank != "icefall":
        raise ValueError(f"`fbank` must be 'icefall' or 'w2v-bert-2.0', but is {fbank!r} instead.")
    return sherpa_onnx.FeatureExtractorConfig(sampling_rate=SAMPLING_RATE, feature_dim=80, dither=0)


def create_recognizer(
    files: ExportedFiles,
    method: str,
    *,
    num_threads: int = 1,
    max_active_paths: int = 4,
    fbank: str = "icefall",
):  # -> sherpa_onnx.OfflineRecognizer
    """sherpa-onnx's offline transducer recognizer on ``files``, with the model's fbank."""
    import sherpa_onnx

    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but is {method!r} instead.")
    recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
        encoder=str(files.encoder),
        decoder=str(files.decoder),
        joiner=str(files.joiner),
        tokens=str(files.tokens),
        num_threads=num_threads,
        sample_rate=SAMPLING_RATE,
        feature_dim=80,
        dither=0.0,
        decoding_method=method,
        max_active_paths=max_active_paths,
        model_type="transducer",
    )
    if fbank != "icefall":  # from_transducer takes no fbank options: rebuild with them
        recognizer.config.feat_config = sherpa_feature_config(fbank)
        recognizer.recognizer = type(recognizer.recognizer)(recognizer.config)
    return recognizer


def sherpa_decode(
    files: ExportedFiles,
    utts: Sequence[Utterance],
    method: str,
    *,
    num_threads: int = 1,
    max_active_paths: int = 4,
    batch_size: int = 8,
    name: str = "",
    fbank: str = "icefall",
) -> DecodeRun:
    """Decodes ``utts`` with sherpa-onnx from the samples; the timing covers fbank + decoding."""
    recognizer = create_recognizer(
        files, method, num_threads=num_threads, max_active_paths=max_active_paths, fbank=fbank
    )
    run = DecodeRun(name=name or f"sherpa-onnx {method}")
    for batch in _batches(utts, batch_size):
        start = time.perf_counter()
        streams = []
        for utt in batch:
            stream = recognizer.create_stream()
            stream.accept_waveform(SAMPLING_RATE, utt.samples)
            streams.append(stream)
        recognizer.decode_streams(streams)
        run.elapsed_seconds += time.perf_counter() - start
        for utt, stream in zip(batch, streams):
            run.hyps[utt.id] = stream.result.text.split()
            run.audio_seconds += utt.duration
    return run


def compute_fbank(samples: np.ndarray, fbank: str = "icefall") -> torch.Tensor:
    """(L,) float32 samples at 16 kHz -> (T, 80) fbank of kind ``fbank`` (w2vbert.data.fbank)."""
    from w2vbert.data.fbank import fbank_extractor

    extractor = fbank_extractor(kind=fbank)
    # w2v-BERT 2.0: the frames alone, as sherpa-onnx computes them (stored features carry 2
    # normalisation-neutral frames more, see W2vBert2Fbank)
    extract = getattr(extractor, "extract_exact", extractor.extract)
    return torch.from_numpy(np.asarray(extract(samples, SAMPLING_RATE), dtype=np.float32))


def fbank_batch(
    samples: Sequence[np.ndarray], fbank: str = "icefall"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch side's encoder input: (N, T, 80) fbank of kind ``fbank`` of each (L,) float32
    samples at 16 kHz (:func:`compute_fbank`), padded with log(1e-10), and (N,) frame counts."""
    feats = [compute_fbank(x, fbank) for x in samples]
    x_lens = torch.tensor([f.size(0) for f in feats], dtype=torch.int64)
    x = torch.nn.utils.rnn.pad_sequence(
        feats, batch_first=True, padding_value=-23.025850929940457
    )
    return x, x_lens


@torch.no_grad()
def pytorch_decode(
    model: nn.Module,
    utts: Sequence[Utterance],
    method: str,
    id_to_symbol: dict[int, str],
    *,
    beam: int = 4,
    batch_size: int = 8,
    name: str = "",
    fbank: str = "icefall",
) -> DecodeRun:
    """Decodes ``utts`` with the PyTorch Transducer (fbank from the samples, as sherpa-onnx does).

    The timing covers fbank, encoder and search, on ``torch.get_num_threads()`` threads.
    """
    from w2vbert.decoding.search import greedy_search_batch, modified_beam_search

    # sherpa-onnx treats <unk> as blank: decode the same way so transcripts can be compared
    unk_id = next((i for i, sym in id_to_symbol.items() if sym == "<unk>"), None)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but is {method!r} instead.")
    model.eval()
    run = DecodeRun(name=name or f"pytorch {method}")
    for batch in _batches(utts, batch_size):
        start = time.perf_counter()
        x, x_lens = fbank_batch([u.samples for u in batch], fbank)
        encoder_out, encoder_out_lens = model.encoder(x, x_lens)  # (N, S, M), (N,)
        if method == "greedy_search":
            hyps = greedy_search_batch(model, encoder_out, encoder_out_lens, unk_id=unk_id)
        else:
            hyps = modified_beam_search(
                model, encoder_out, encoder_out_lens, beam=beam, unk_id=unk_id
            )
        run.elapsed_seconds += time.perf_counter() - start
        for utt, hyp in zip(batch, hyps):
            run.hyps[utt.id] = token_ids_to_words(hyp, id_to_symbol)
            run.audio_seconds += utt.duration
    return run
