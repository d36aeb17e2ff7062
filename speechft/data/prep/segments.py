"""Stage 4, cut (with `--segments` only): each kept segment becomes its own 16 kHz mono PCM-16 file.

Recordings are decoded once each, in worker processes when there are several; a segment file that
already holds exactly its audio length is left as it is, so re-running prep is cheap.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from speechft.data import audio
from speechft.data.audio import MODEL_SAMPLE_RATE, AudioError, AudioInfo
from speechft.data.prep.checks import KeptUtterance
from speechft.data.prep.options import ProgressCallback
from speechft.data.prep.probe import Unreadable
from speechft.data.prep.reasons import Rejection
from speechft.errors import InputError
from speechft.io.atomic import atomic_path


class SegmentJob(NamedTuple):
    """One recording's segments to cut, in 16 kHz samples, each with its target file."""

    location: str
    segments: list[tuple[int, int, str]]  # (start, end, target)
    timeout_s: float
    retries: int


def segment_file_name(key: str) -> str:
    """A file name for a segment key that is unique and safe (keys may hold `/`)."""
    return urllib.parse.quote(key, safe="") + ".wav"


def cut_segments(
    kept: Sequence[KeptUtterance], audio_out: Path, pool: Any, timeout_s: float, retries: int, progress: ProgressCallback
) -> list[KeptUtterance | Rejection]:
    """Cut every kept segment into `audio_out`; each outcome points at its file, or says why not."""
    try:
        audio_out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{audio_out}: cannot create ({error.strerror})") from None
    targets = [os.path.abspath(audio_out / segment_file_name(utterance.key)) for utterance in kept]
    by_recording: dict[str, list[int]] = {}
    for index, utterance in enumerate(kept):
        by_recording.setdefault(utterance.location, []).append(index)
    jobs = [
        SegmentJob(location, [(*_samples(kept[index]), targets[index]) for index in indices], timeout_s, retries) for location, indices in by_recording.items()
    ]
    cut: dict[int, int | Unreadable] = {}
    progress("segments", 0, len(kept))
    results = pool.imap(cut_recording, jobs) if pool is not None and len(jobs) > 1 else map(cut_recording, jobs)
    for indices, outcomes in zip(by_recording.values(), results):
        cut.update(zip(indices, outcomes))
        progress("segments", len(cut), len(kept))
    return [_outcome(utterance, cut[index], targets[index]) for index, utterance in enumerate(kept)]


def _samples(utterance: KeptUtterance) -> tuple[int, int]:
    assert utterance.segment is not None  # only segments are cut
    return round(utterance.segment.start_s * MODEL_SAMPLE_RATE), round(utterance.segment.end_s * MODEL_SAMPLE_RATE)


def _outcome(utterance: KeptUtterance, cut: int | Unreadable, target: str) -> KeptUtterance | Rejection:
    if isinstance(cut, Unreadable):
        return Rejection(utterance.key, cut.reason, f"recording {utterance.location}: {cut.detail}")
    return utterance._replace(location=target, info=AudioInfo(cut, MODEL_SAMPLE_RATE, 1))


def cut_recording(job: SegmentJob) -> list[int | Unreadable]:
    """Worker: cut one recording's segments; per segment the samples written, or why none were."""
    import soundfile

    done = [_finished(start, end, target) for start, end, target in job.segments]
    if all(frames is not None for frames in done):
        return done  # type: ignore[return-value]
    try:
        samples = audio.load_audio(job.location, timeout_s=job.timeout_s, retries=job.retries)
    except AudioError as error:
        return [frames if frames is not None else Unreadable(error.reason, error.detail) for frames in done]
    outcomes: list[int | Unreadable] = []
    for (start, end, target), frames in zip(job.segments, done):
        if frames is not None:
            outcomes.append(frames)
            continue
        piece = samples[start : min(end, len(samples))]
        try:
            with atomic_path(target, durable=False) as temporary:
                soundfile.write(str(temporary), piece, MODEL_SAMPLE_RATE, subtype="PCM_16", format="WAV")
        except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
            raise InputError(f"{target}: cannot write segment audio ({error})") from None
        outcomes.append(len(piece))
    return outcomes


def _finished(start: int, end: int, target: str) -> int | None:
    """The sample count of a target that already holds this segment, else None."""
    try:
        existing = audio.read_file_info(target)
    except AudioError:
        return None
    if existing.frames == end - start and existing.sample_rate == MODEL_SAMPLE_RATE and existing.channels == 1:
        return end - start
    return None
