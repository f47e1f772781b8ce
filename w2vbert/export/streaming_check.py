"""Streaming decoding of audio fed in small pieces: sherpa-onnx's ``OnlineRecognizer`` on the
exported streaming model (:mod:`w2vbert.export.onnx_streaming`), and the PyTorch model chunk by
chunk on the same frames (:mod:`w2vbert.model.streaming`), so that both can be compared.

sherpa-onnx runs a chunk of T frames once ``processed + T < frames ready`` and advances T frames
(``pad_length`` 0), so after the tail padding it has run ``(num_frames - 1) // T`` chunks; the
PyTorch side runs the same chunks on the same fbank (kaldifeat, what sherpa-onnx computes). The
tail must be at least one chunk long (:func:`tail_seconds`), or up to T - 1 frames of speech at
the end are never encoded.

Shapes: L samples, T frames per chunk.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from w2vbert.decoding.search import greedy_search_chunk, greedy_start
from w2vbert.export.decode_runs import (
    SAMPLING_RATE,
    DecodeRun,
    Utterance,
    compute_fbank,
    sherpa_feature_config,
    token_ids_to_words,
)
from w2vbert.export.onnx_export import ExportedFiles
from w2vbert.model.streaming import chunk_frames, encode_chunk, start_stream

INT8_MAX_WER_INCREASE = 1.0
"""Allowed absolute WER increase (percent) of int8 over PyTorch streaming greedy (the issue's)."""
TAIL_SECONDS = 0.3
"""Shortest silence appended after each utterance (as sherpa-onnx's examples do); longer for
chunks of more than 0.29 s (:func:`tail_seconds`)."""
FRAME_SECONDS = 0.01
"""One fbank frame (10 ms hop)."""


def tail_seconds(frames: int) -> float:
    """Silence to append so that every frame of the utterance is in a chunk that runs: with
    chunks of T frames run while ``processed + T < frames ready``, an utterance of kT + 1 frames
    needs T frames more. :data:`TAIL_SECONDS` at least."""
    return max(TAIL_SECONDS, (frames + 1) * FRAME_SECONDS)


def create_online_recognizer(
    files: ExportedFiles,
    *,
    num_threads: int = 1,
    method: str = "greedy_search",
    fbank: str = "icefall",
):  # -> sherpa_onnx.OnlineRecognizer
    """sherpa-onnx's online transducer recogniser on the streaming files, with the model's fbank."""
    import sherpa_onnx

    recognizer = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(files.tokens), encoder=str(files.encoder), decoder=str(files.decoder),
        joiner=str(files.joiner), num_threads=num_threads, sample_rate=SAMPLING_RATE,
        feature_dim=80, dither=0.0, decoding_method=method, model_type="conformer",
    )  # fmt: skip
    if fbank != "icefall":  # from_transducer takes no fbank options: rebuild with them
        recognizer.config.feat_config = sherpa_feature_config(fbank)
        recognizer.recognizer = type(recognizer.recognizer)(recognizer.config)
    return recognizer


def _with_tail(samples: np.ndarray, seconds: float) -> np.ndarray:
    tail = np.zeros(round(seconds * SAMPLING_RATE), dtype=np.float32)
    return np.concatenate([samples.astype(np.float32), tail])


def sherpa_stream_decode(
    files: ExportedFiles,
    utts: Sequence[Utterance],
    *,
    piece_seconds: float = 0.1,
    tail: float | None = None,
    num_threads: int = 1,
    fbank: str = "icefall",
) -> DecodeRun:
    """Greedy search of sherpa-onnx's online recogniser, the audio fed ``piece_seconds`` at a time
    as a microphone would (decoding whatever is ready after each piece), then ``tail`` seconds of
    silence (default: :func:`tail_seconds` of the encoder's ``T`` metadata)."""
    from w2vbert.export.onnx_export import read_metadata

    if tail is None:
        tail = tail_seconds(int(read_metadata(files.encoder)["T"]))
    recognizer = create_online_recognizer(files, num_threads=num_threads, fbank=fbank)
    run = DecodeRun(name="sherpa-onnx online greedy_search")
    piece = int(piece_seconds * SAMPLING_RATE)
    for utt in utts:
        start = time.perf_counter()
        stream = recognizer.create_stream()
        samples = _with_tail(utt.samples, tail)
        for i in range(0, len(samples), piece):
            stream.accept_waveform(SAMPLING_RATE, samples[i : i + piece])
            while recognizer.is_ready(stream):
                recognizer.decode_stream(stream)
        stream.input_finished()
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
        run.hyps[utt.id] = recognizer.get_result(stream).split()
        run.elapsed_seconds += time.perf_counter() - start
        run.audio_seconds += utt.duration
    return run


@torch.no_grad()
def pytorch_stream_decode(
    model: nn.Module,
    utts: Sequence[Utterance],
    id_to_symbol: dict[int, str],
    *,
    chunk_size: int,
    left_chunks: int,
    tail: float | None = None,
    fbank: str = "icefall",
) -> DecodeRun:
    """The PyTorch streaming greedy search on the chunks sherpa-onnx runs (one utterance at a
    time, as a stream; the timing covers fbank, encoder and search), after ``tail`` seconds of
    silence (default: :func:`tail_seconds` of the chunk)."""
    model.eval()
    run = DecodeRun(name="pytorch streaming greedy_search")
    frames = chunk_frames(model.encoder, chunk_size)
    tail = tail_seconds(frames) if tail is None else tail
    for utt in utts:
        start = time.perf_counter()
        feats = compute_fbank(_with_tail(utt.samples, tail), fbank)  # (F, 80)
        stream = start_stream(model.encoder, 1, chunk_size, left_chunks)
        state = greedy_start(model, 1)
        full = torch.full((1,), frames, dtype=torch.int64)
        for k in range((feats.size(0) - 1) // frames):
            chunk = feats[k * frames : (k + 1) * frames].unsqueeze(0)
            out, out_lens, stream = encode_chunk(model.encoder, stream, chunk, full)
            state = greedy_search_chunk(model, out, out_lens, state)
        run.hyps[utt.id] = token_ids_to_words(state.hyps[0], id_to_symbol)
        run.elapsed_seconds += time.perf_counter() - start
        run.audio_seconds += utt.duration
    return run


def run_streaming_check(
    model: nn.Module,
    fp32: ExportedFiles,
    int8: ExportedFiles | None,
    utts: Sequence[Utterance],
    id_to_symbol: dict[int, str],
    *,
    chunk_size: int,
    left_chunks: int,
    num_threads: int = 1,
    fbank: str = "icefall",
) -> dict:
    """sherpa-onnx online (fp32, int8) and PyTorch streaming greedy on ``utts``: WER, RTF and how
    many transcripts equal PyTorch's. Passes when fp32 equals PyTorch on every utterance and
    int8's WER is within :data:`INT8_MAX_WER_INCREASE` of it."""
    from w2vbert.decoding.scoring import word_error_rate

    torch.set_num_threads(num_threads)
    runs = [pytorch_stream_decode(model, utts, id_to_symbol, chunk_size=chunk_size,
                                  left_chunks=left_chunks, fbank=fbank)]  # fmt: skip
    for files, name in ((fp32, "fp32"), (int8, "int8")):
        if files is not None:
            run = sherpa_stream_decode(files, utts, num_threads=num_threads, fbank=fbank)
            run.name = f"sherpa-onnx online greedy_search {name}"
            runs.append(run)
    refs = {u.id: list(u.ref) for u in utts}
    has_refs = any(refs.values())
    rows = []
    for run in runs:
        same = sum(run.hyps[k] == runs[0].hyps[k] for k in refs)
        rows.append({"run": run.name, "wer": word_error_rate(refs, run.hyps) if has_refs else None,
                     "rtf": run.rtf, "identical_to_pytorch": same})  # fmt: skip
    passed = rows[1]["identical_to_pytorch"] == len(utts)
    if int8 is not None and has_refs:
        passed = passed and rows[2]["wer"] <= rows[0]["wer"] + INT8_MAX_WER_INCREASE
    return {"num_utterances": len(utts), "audio_seconds": runs[0].audio_seconds,
            "chunk_size": chunk_size, "left_context_chunks": left_chunks,
            "num_threads": num_threads, "runs": rows, "passed": passed}  # fmt: skip


def streaming_report(result: dict) -> str:
    """A short Markdown table of :func:`run_streaming_check`'s result."""
    n = result["num_utterances"]
    lines = [f"{n} utterances, {result['audio_seconds']:.1f} s of audio fed in 0.1 s pieces; chunk "
             f"{result['chunk_size']} steps, left context {result['left_context_chunks']} chunks, "
             f"{result['num_threads']} thread(s).", "",
             "| run | WER % | RTF | identical to PyTorch |", "|---|---|---|---|"]  # fmt: skip
    for row in result["runs"]:
        wer = "-" if row["wer"] is None else f"{row['wer']:.2f}"
        lines.append(
            f"| {row['run']} | {wer} | {row['rtf']:.4f} | {row['identical_to_pytorch']}/{n} |"
        )
    return "\n".join(lines + ["", f"passed: {result['passed']}", ""])
