"""Stage 3, checks: from header facts and token counts to a kept utterance or a rejection.

Empty audio, segments outside their recording, and the length limits (fbank frames, transcript
tokens) are decided here; a segment's extent is snapped to 16 kHz samples, the rate it is cut at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from speechft.data.audio import MODEL_SAMPLE_RATE, AudioInfo
from speechft.data.kaldi import Segment
from speechft.data.prep.candidates import Candidate
from speechft.data.prep.options import PrepOptions
from speechft.data.prep.reasons import (
    BAD_SEGMENT,
    DOWNMIXED,
    RESAMPLED,
    TOO_LONG,
    TOO_MANY_TOKENS,
    TOO_SHORT,
    ZERO_LENGTH,
    Rejection,
)

# Kaldi's extract-segments truncates a segment that overshoots its recording by less than this.
SEGMENT_MAX_OVERSHOOT_S = 0.5


class KeptUtterance(NamedTuple):
    """An utterance that passed every check: what its jsonl line says.

    `info` is the audio as training will read it (for a segment: its 16 kHz mono extent).
    """

    key: str
    transcript: str
    location: str
    text_length: int
    info: AudioInfo
    segment: Segment | None = None


def check_all(
    candidates: Sequence[Candidate], probed: Sequence[AudioInfo | Rejection], text_lengths: Sequence[int], options: PrepOptions
) -> list[KeptUtterance | Rejection]:
    return [check(*arguments, options) for arguments in zip(candidates, probed, text_lengths)]


def check(candidate: Candidate, probed: AudioInfo | Rejection, text_length: int, options: PrepOptions) -> KeptUtterance | Rejection:
    """One candidate against the audio and length limits of `options`."""
    if isinstance(probed, Rejection):
        return probed
    key = candidate.key
    if probed.frames == 0:
        return Rejection(key, ZERO_LENGTH, f"{candidate.location}: 0 samples")
    info, segment = probed, candidate.segment
    if candidate.segment is not None:
        extent = segment_extent(key, candidate.segment, probed)
        if isinstance(extent, Rejection):
            return extent
        info, segment = AudioInfo(_sample(extent.end_s) - _sample(extent.start_s), MODEL_SAMPLE_RATE, 1), extent
        if info.frames == 0:
            return Rejection(key, ZERO_LENGTH, f"segment {candidate.segment.start_s}..{candidate.segment.end_s} s has no samples")
    frames = info.fbank_frames
    if frames < options.min_frames:
        return Rejection(key, TOO_SHORT, f"{frames} fbank frames ({info.duration_ms} ms) < --min-frames {options.min_frames}")
    if frames > options.max_frames:
        return Rejection(key, TOO_LONG, f"{frames} fbank frames ({info.duration_ms} ms) > --max-frames {options.max_frames}")
    if text_length > options.max_tokens:
        return Rejection(key, TOO_MANY_TOKENS, f"{text_length} tokens > --max-tokens {options.max_tokens}")
    return KeptUtterance(key, candidate.transcript, candidate.location, text_length, info, segment)


def segment_extent(key: str, segment: Segment, recording: AudioInfo) -> Segment | Rejection:
    """The segment's start and end on 16 kHz sample boundaries, clipped to the recording's end.

    End -1 means the end of the recording; an end past it by less than
    :data:`SEGMENT_MAX_OVERSHOOT_S` is truncated, as Kaldi does.
    """
    duration_s = recording.duration_s
    end_s = duration_s if segment.end_s == -1 else segment.end_s
    if segment.start_s >= duration_s or end_s > duration_s + SEGMENT_MAX_OVERSHOOT_S:
        return Rejection(key, BAD_SEGMENT, f"{segment.start_s}..{segment.end_s} s is outside recording {segment.recording} ({duration_s:.3f} s)")
    length = recording.frames
    if recording.sample_rate != MODEL_SAMPLE_RATE:
        length = math.ceil(recording.frames * MODEL_SAMPLE_RATE / recording.sample_rate)
    start = _sample(segment.start_s)
    end = min(_sample(end_s), length)
    return Segment(segment.lineno, segment.key, segment.recording, start / MODEL_SAMPLE_RATE, end / MODEL_SAMPLE_RATE)


def _sample(seconds: float) -> int:
    return round(seconds * MODEL_SAMPLE_RATE)


def audio_warnings(candidates: Sequence[Candidate], probed: Sequence[AudioInfo | Rejection]) -> dict[str, list[str]]:
    """Keys whose audio training will resample or downmix (segments are cut to 16 kHz mono instead).

    Counted for every candidate with samples, including ones a length limit then rejects.
    """
    warned: dict[str, list[str]] = {RESAMPLED: [], DOWNMIXED: []}
    for candidate, info in zip(candidates, probed):
        if candidate.segment is not None or isinstance(info, Rejection) or info.frames == 0:
            continue
        if info.sample_rate != MODEL_SAMPLE_RATE:
            warned[RESAMPLED].append(candidate.key)
        if info.channels > 1:
            warned[DOWNMIXED].append(candidate.key)
    return warned
