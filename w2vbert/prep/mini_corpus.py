"""The bundled mini corpus: English sentences spoken by espeak-ng voices, in Lhotse-readable layouts.

Layout under ``out_dir`` (part names are options):

- labelled parts, LibriSpeech layout::

      <part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
      <part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt   ("<spk>-<chapter>-<utt> WORDS ...")

- the unlabelled part, Libri-Light layout (several sentences per file, silence between them)::

      <part>/<spk>/book_<id>/<spk>_<id>_<n>.flac
      <part>/<spk>/book_<id>/<spk>_<id>_<n>.json         ({"speaker", "voice_activity": [[s, e], ...]})

- ``SPEAKERS.TXT`` (LibriSpeech style, the voice in the NAME column) and ``corpus_info.json``
  (the config and, per part, hours, utterances, speakers and voices).

Guarantees: the test voices are used by no other part, the dev voices by no training part;
every sentence appears once in the whole corpus (so no dev/test sentence is in training);
the corpus is a function of the config (seed included), not of ``num_jobs``. The corpus is built
in ``.<name>.partial`` beside ``out_dir`` and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import random
import shutil
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from w2vbert.prep.espeak import Voice, all_voices, require_espeak, resample, synthesize

logger = logging.getLogger(__name__)

# Seconds of speech per word at 1 word/min, measured on espeak-ng 1.51 English voices
# (least squares over 60 sentences: duration ~ 0.70 * words * 60 / wpm + 0.49 s); used only to
# plan sizes.
_SECONDS_PER_WORD_AT_1_WPM = 0.70 * 60.0
_FIXED_SECONDS_PER_UTTERANCE = 0.49


@dataclass(frozen=True, kw_only=True)
class MiniCorpusConfig:
    """Sizes, names and randomness of the mini corpus."""

    seed: int = 0
    """Seed of every random choice (sentences, voices, pitch, speed, gain, noise)."""
    train_minutes: float = 20.0
    """Audio minutes of the labelled training part (planned from an estimate; within ~10 %)."""
    dev_minutes: float = 5.0
    """Audio minutes of the dev part."""
    test_minutes: float = 5.0
    """Audio minutes of the test part (voices used by no other part)."""
    unlabelled_minutes: float = 120.0
    """Audio minutes of the unlabelled (pre-training) part."""
    labelled_seconds_per_speaker: float = 30.0
    """Seconds of audio per speaker in the labelled parts (sets their number of speakers)."""
    unlabelled_seconds_per_speaker: float = 120.0
    """Seconds of audio per speaker in the unlabelled part."""
    min_sentences_per_file: int = 3
    """Fewest sentences in one unlabelled (Libri-Light layout) file."""
    max_sentences_per_file: int = 8
    """Most sentences in one unlabelled file."""
    min_words: int = 5
    """Fewest words per sentence."""
    max_words: int = 25
    """Most words per sentence."""
    train_part: str = "train-mini"
    dev_part: str = "dev-mini"
    test_part: str = "test-mini"
    unlabelled_part: str = "unlab-mini"
    sampling_rate: int = 16000
    """Sampling rate of the FLAC files, Hz."""

    def validate(self) -> None:
        """Raises ValueError listing every invalid field."""
        errors = []
        for name in ("train_minutes", "dev_minutes", "test_minutes", "unlabelled_minutes"):
            if getattr(self, name) <= 0:
                errors.append(f"{name} must be > 0, but is {getattr(self, name)}")
        for name in ("labelled_seconds_per_speaker", "unlabelled_seconds_per_speaker"):
            if getattr(self, name) <= 0:
                errors.append(f"{name} must be > 0, but is {getattr(self, name)}")
        if not 1 <= self.min_sentences_per_file <= self.max_sentences_per_file:
            errors.append(
                "need 1 <= min_sentences_per_file <= max_sentences_per_file, but they are "
                f"{self.min_sentences_per_file} and {self.max_sentences_per_file}"
            )
        if not 1 <= self.min_words <= self.max_words:
            errors.append(
                f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}"
            )
        parts = [self.train_part, self.dev_part, self.test_part, self.unlabelled_part]
        if len(set(parts)) != 4 or any(not p or "/" in p or "flac" in p for p in parts):
            errors.append(f"part names must be 4 distinct plain names without 'flac', got {parts}")
        if errors:
            raise ValueError("Invalid MiniCorpusConfig: " + "; ".join(errors))


def tiny_config(seed: int = 0) -> MiniCorpusConfig:
    """A corpus of a few utterances per part (about 1.5 min of audio), for tests."""
    return MiniCorpusConfig(
        seed=seed,
        train_minutes=0.25,
        dev_minutes=0.1,
        test_minutes=0.1,
        unlabelled_minutes=0.4,
        labelled_seconds_per_speaker=6.0,
        unlabelled_seconds_per_speaker=12.0,
        min_sentences_per_file=2,
        max_sentences_per_file=3,
    )


@dataclass(frozen=True)
class Speaker:
    id: int
    voice: Voice
    pitch: int
    """Base espeak-ng pitch, 0..99."""
    speed: int
    """Base speaking rate, words per minute."""
    part: str


@dataclass(frozen=True)
class Utterance:
    text: str
    pitch: int
    speed: int


@dataclass(frozen=True)
class FileJob:
    """One FLAC file to synthesise: one utterance (labelled) or several (unlabelled)."""

    rel_path: str
    speaker: Speaker
    chapter: int
    utterances: tuple[Utterance, ...]
    gaps: tuple[float, ...]
    """Seconds of silence after each utterance but the last."""
    lead: float
    """Seconds of silence before the first utterance."""
    peak: float
    """Peak amplitude of the file, fraction of full scale."""
    noise_level: float
    """Standard deviation of the added white noise, fraction of full scale."""
    seed: int


@dataclass(frozen=True)
class FileResult:
    rel_path: str
    num_samples: int
    speech: tuple[tuple[float, float], ...]
    """(start, end) seconds of each utterance's speech in the file."""


def estimate_seconds(text: str, speed: int, *, labelled: bool) -> float:
    """Planned seconds of ``text`` spoken at ``speed`` words per minute, plus the mean silence
    added around it (0.15 s lead of a labelled file, 0.5 s gap in an unlabelled file)."""
    speech = len(text.split()) * _SECONDS_PER_WORD_AT_1_WPM / speed + _FIXED_SECONDS_PER_UTTERANCE
    return speech + (0.15 if labelled else 0.5)


def _num_speakers(minutes: float, seconds_per_speaker: float) -> int:
    return max(1, int(round(minutes * 60.0 / seconds_per_speaker)))


def plan_corpus(config: MiniCorpusConfig, sentences: Sequence[str]) -> list[FileJob]:
    """Decides every file of the corpus: speaker, voice, sentences, prosody, gain, noise.

    Deterministic in (config, sentences). Test speakers get voices of their own, dev speakers
    voices of their own, and the training parts share the remaining voices.
    """
    config.validate()
    rng = random.Random(config.seed)
    pool = sorted(set(sentences))
    rng.shuffle(pool)
    next_pos = 0  # sentences are used in pool order, each once

    lab_s = config.labelled_seconds_per_speaker
    sizes = {  # part -> (minutes, number of speakers, labelled)
        config.test_part: (config.test_minutes, _num_speakers(config.test_minutes, lab_s), True),
        config.dev_part: (config.dev_minutes, _num_speakers(config.dev_minutes, lab_s), True),
        config.train_part: (config.train_minutes, _num_speakers(config.train_minutes, lab_s), True),
        config.unlabelled_part: (
            config.unlabelled_minutes,
            _num_speakers(config.unlabelled_minutes, config.unlabelled_seconds_per_speaker),
            False,
        ),
    }
    voices = all_voices()
    rng.shuffle(voices)
    num_test, num_dev = sizes[config.test_part][1], sizes[config.dev_part][1]
    if num_test + num_dev >= len(voices):
        raise ValueError(
            f"The test and dev parts need {num_test} + {num_dev} voices of their own, but there "
            f"are only {len(voices)} voices and training needs at least one; raise "
            "labelled_seconds_per_speaker or lower dev/test minutes."
        )
    part_voices = {
        config.test_part: voices[:num_test],
        config.dev_part: voices[num_test : num_test + num_dev],
    }
    train_pool = voices[num_test + num_dev :]
    num_train = sizes[config.train_part][1]
    num_unlab = sizes[config.unlabelled_part][1]
    part_voices[config.train_part] = [train_pool[i % len(train_pool)] for i in range(num_train)]
    part_voices[config.unlabelled_part] = [
        train_pool[(num_train + i) % len(train_pool)] for i in range(num_unlab)
    ]

    total_speakers = sum(n for _, n, _ in sizes.values())
    speaker_ids = rng.sample(range(100, 10000), total_speakers)
    chapter_ids = rng.sample(range(10000, 1000000), total_speakers)
    jobs: list[FileJob] = []
    k = 0
    for part, (minutes, num_spk, labelled) in sizes.items():
        quota = minutes * 60.0 / num_spk
        for voice in part_voices[part]:
            spk = Speaker(speaker_ids[k], voice, rng.randint(30, 70), rng.randint(145, 200), part)
            chapter = chapter_ids[k]
            k += 1
            noise_level = 10 ** rng.uniform(-4.0, -2.7)
            utts: list[Utterance] = []
            planned = 0.0
            while True:
                if next_pos >= len(pool):
                    raise ValueError(
                        f"Ran out of sentences ({len(pool)} available) while planning part "
                        f"{part}; lower the corpus size."
                    )
                pitch = min(99, max(0, spk.pitch + rng.randint(-6, 6)))
                speed = spk.speed + rng.randint(-10, 10)
                seconds = estimate_seconds(pool[next_pos], speed, labelled=labelled)
                if utts and planned + seconds / 2 > quota:
                    break  # closest to the quota; the sentence stays for the next speaker
                utts.append(Utterance(pool[next_pos], pitch, speed))
                next_pos += 1
                planned += seconds
            groups = [[u] for u in utts]
            if not labelled:
                groups = []
                while utts:
                    n = rng.randint(config.min_sentences_per_file, config.max_sentences_per_file)
                    groups.append(utts[:n])
                    utts = utts[n:]
            for n, group in enumerate(groups):
                if labelled:
                    rel = f"{part}/{spk.id}/{chapter}/{spk.id}-{chapter}-{n:04d}.flac"
                else:
                    rel = f"{part}/{spk.id}/book_{chapter}/{spk.id}_{chapter}_{n:03d}.flac"
                gaps = tuple(round(rng.uniform(0.2, 0.8), 3) for _ in group[1:])
                jobs.append(
                    FileJob(
                        rel,
                        spk,
                        chapter,
                        tuple(group),
                        gaps,
                        round(rng.uniform(0.05, 0.25), 3),
                        round(rng.uniform(0.3, 0.9), 3),
                        noise_level,
                        rng.randrange(2**31),
                    )
                )
    return jobs


def _speech_span(samples: np.ndarray, threshold: float = 0.02) -> tuple[int, int]:
    """First and one-past-last sample whose magnitude exceeds ``threshold`` x the peak."""
    loud = np.flatnonzero(np.abs(samples) > threshold * max(float(np.abs(samples).max()), 1e-9))
    if len(loud) == 0:
        return 0, len(samples)
    return int(loud[0]), int(loud[-1]) + 1


def synthesize_file(job: FileJob, root: str, sampling_rate: int = 16000) -> FileResult:
    """Synthesises, mixes and writes one FLAC file of ``job`` under ``root``."""
    offset = int(round(job.lead * sampling_rate))
    pieces: list[np.ndarray] = [np.zeros(offset, dtype=np.float32)]
    spans: list[tuple[int, int]] = []
    for i, utt in enumerate(job.utterances):
        audio, rate = synthesize(utt.text, job.speaker.voice, pitch=utt.pitch, speed=utt.speed)
        audio = resample(audio, rate, sampling_rate)
        start, end = _speech_span(audio)
        spans.append((offset + start, offset + end))
        pieces.append(audio)
        offset += len(audio)
        if i < len(job.gaps):
            gap = np.zeros(int(round(job.gaps[i] * sampling_rate)), dtype=np.float32)
            pieces.append(gap)
            offset += len(gap)
    mix = np.concatenate(pieces)
    mix *= job.peak / max(float(np.abs(mix).max()), 1e-9)
    mix += np.random.default_rng(job.seed).normal(0.0, job.noise_level, len(mix)).astype(np.float32)
    pcm = np.clip(np.round(mix * 32767.0), -32768, 32767).astype(np.int16)
    path = Path(root) / job.rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, pcm, sampling_rate, format="FLAC", subtype="PCM_16")
    speech = tuple((round(s / sampling_rate, 3), round(e / sampling_rate, 3)) for s, e in spans)
    return FileResult(job.rel_path, len(pcm), speech)


def _synthesize_star(args: tuple[FileJob, str, int]) -> FileResult:
    return synthesize_file(*args)


def _write_metadata(
    root: Path, config: MiniCorpusConfig, jobs: list[FileJob], results: list[FileResult]
) -> dict:
    """Writes trans.txt, Libri-Light JSONs, SPEAKERS.TXT, corpus_info.json; returns the info."""
    transcripts: dict[Path, list[str]] = defaultdict(list)
    parts: dict[str, dict] = {}
    speakers: dict[int, tuple[Speaker, float]] = {}
    sr = config.sampling_rate
    for job, res in zip(jobs, results):
        spk = job.speaker
        path = root / res.rel_path
        seconds = res.num_samples / sr
        if spk.part == config.unlabelled_part:
            meta = {
                "speaker": str(spk.id),
                "voice_activity": [list(span) for span in res.speech],
                "book_meta": {"id": str(job.chapter), "title": "synthetic (espeak-ng)"},
                "voice": spk.voice.name,
            }
            path.with_suffix(".json").write_text(json.dumps(meta) + "\n")
        else:
            trans = path.parent / f"{spk.id}-{job.chapter}.trans.txt"
            transcripts[trans].append(f"{path.stem} {job.utterances[0].text}")
        info = parts.setdefault(
            spk.part, {"num_files": 0, "num_utterances": 0, "seconds": 0.0, "speakers": set()}
        )
        info["num_files"] += 1
        info["num_utterances"] += len(job.utterances)
        info["seconds"] += seconds
        info["speakers"].add(spk)
        speakers[spk.id] = (spk, speakers.get(spk.id, (spk, 0.0))[1] + seconds)
    for trans, lines in transcripts.items():
        trans.write_text("\n".join(sorted(lines)) + "\n")

    rows = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for spk_id, (spk, seconds) in sorted(speakers.items()):
        name = f"{spk.voice.name} pitch {spk.pitch} speed {spk.speed}"
        rows.append(f"{spk_id:<5}| {spk.voice.sex} | {spk.part:<16} | {seconds / 60:5.2f} | {name}")
    (root / "SPEAKERS.TXT").write_text("\n".join(rows) + "\n")

    summary = {}
    for part, info in parts.items():
        voices = sorted({s.voice.name for s in info["speakers"]})
        summary[part] = {
            "layout": "librilight" if part == config.unlabelled_part else "librispeech",
            "num_files": info["num_files"],
            "num_utterances": info["num_utterances"],
            "hours": round(info["seconds"] / 3600.0, 4),
            "num_speakers": len(info["speakers"]),
            "num_voices": len(voices),
            "voices": voices,
        }
    corpus_info = {"config": dataclasses.asdict(config), "parts": summary}
    (root / "corpus_info.json").write_text(json.dumps(corpus_info, indent=1) + "\n")
    return corpus_info


def make_mini_corpus(
    config: MiniCorpusConfig,
    out_dir: Path,
    sentences: Sequence[str],
    *,
    num_jobs: int = 1,
    force: bool = False,
) -> dict:
    """Synthesises the corpus into ``out_dir``; returns the content of ``corpus_info.json``.

    If ``out_dir`` already holds a complete corpus of the same config it is kept (and its info
    returned); a different one is an error unless ``force``.
    """
    out_dir = Path(out_dir)
    info_path = out_dir / "corpus_info.json"
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            if info_path.is_file():
                info = json.loads(info_path.read_text())
                if info.get("config") == dataclasses.asdict(config):
                    logger.info("%s already holds this corpus; keeping it", out_dir)
                    return info
            raise FileExistsError(
                f"{out_dir} exists and does not hold a complete mini corpus of this config; "
                "remove it or pass --force to rebuild it."
            )
    require_espeak()
    jobs = plan_corpus(config, sentences)
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    logger.info("Synthesising %d files with %d job(s) into %s", len(jobs), num_jobs, partial)
    args = [(job, str(partial), config.sampling_rate) for job in jobs]
    if num_jobs <= 1:
        results = [_synthesize_star(a) for a in args]
    else:
        # spawn, not fork (a forked child can inherit a lock held by another thread and hang), and
        # an executor, not multiprocessing.Pool: a worker that dies is an error
        # (BrokenProcessPool), where Pool.imap waits for its result forever
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(num_jobs, mp_context=ctx) as pool:
            results = list(pool.map(_synthesize_star, args, chunksize=4))
    info = _write_metadata(partial, config, jobs, results)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.rename(partial, out_dir)
    for part, p in info["parts"].items():
        logger.info(
            "%s: %.3f h, %d files, %d utterances, %d speakers, %d voices",
            part,
            p["hours"],
            p["num_files"],
            p["num_utterances"],
            p["num_speakers"],
            p["num_voices"],
        )
    return info
