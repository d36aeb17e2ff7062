"""Stage 1, candidates: join `wav.scp` and `text` (and `segments`) by key.

Every key of the inputs comes out exactly once, in report order (`wav.scp` order, then keys only
`text` has; with segments: `segments` order, then transcripts without a segment, then recordings
no segment uses), either as a :class:`Candidate` whose audio is still to be read or as a
:class:`Rejection` found from the lines alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from speechft.data import audio
from speechft.data.kaldi import BadLine, KeyedFile, Segment, parse_segment, read_keyed_file
from speechft.data.prep.options import PrepOptions
from speechft.data.prep.reasons import (
    BAD_LINE,
    DUPLICATE_KEY,
    EMPTY_TRANSCRIPT,
    NO_AUDIO,
    NO_SEGMENTS,
    NO_TRANSCRIPT,
    UNSUPPORTED_ENTRY,
    Rejection,
)


class Candidate(NamedTuple):
    """An utterance whose lines are fine; its audio has not been opened yet.

    A named tuple: one is built per corpus line, and tuples build fastest.
    """

    key: str
    transcript: str
    location: str  # absolute path or URL (with segments: the recording's)
    segment: Segment | None = None


@dataclass(frozen=True)
class Joined:
    """Stage 1's result: one outcome per key in report order, and keys given twice identically."""

    outcomes: list[Candidate | Rejection]
    repeated: list[str]

    @property
    def candidates(self) -> list[Candidate]:
        return [outcome for outcome in self.outcomes if isinstance(outcome, Candidate)]


def read_candidates(options: PrepOptions) -> Joined:
    """Read the input files and join them (with `options.segments`: segment ids are the keys)."""
    scp = read_keyed_file(options.scp, value_required=True, what="audio path")
    text = read_keyed_file(options.text, value_required=False, what="transcript")
    repeated = [*scp.repeats, *text.repeats]
    if options.segments is None:
        return Joined(join(scp, text), repeated)
    segments = read_keyed_file(options.segments, value_required=True, what="recording and times")
    return Joined(join_segments(scp, text, segments), [*repeated, *segments.repeats])


def join(scp: KeyedFile, text: KeyedFile) -> list[Candidate | Rejection]:
    """Without segments: a `wav.scp` key is an utterance."""
    outcomes: list[Candidate | Rejection] = []
    for key in dict.fromkeys([*scp.keys_in_order(), *text.keys_in_order()]):
        entry = scp.entries.get(key)
        location = entry.value if entry is not None else None
        rejection = line_checks(key, text, (scp,), location)
        if rejection is not None:
            outcomes.append(rejection)
        else:
            assert location is not None  # line_checks rejects a key without audio
            outcomes.append(Candidate(key, text.entries[key].value, _absolute(location)))
    return outcomes


def join_segments(scp: KeyedFile, text: KeyedFile, segments: KeyedFile) -> list[Candidate | Rejection]:
    """With segments: utterance keys are segment ids, `wav.scp` keys are recordings.

    A recording that no segment uses is rejected as `no_segments`.
    """
    parsed: dict[str, Segment | BadLine] = {key: parse_segment(entry, segments.name) for key, entry in segments.entries.items()}
    used_recordings = {segment.recording if isinstance(segment, Segment) else segments.entries[key].value.split()[0] for key, segment in parsed.items()}
    utterances = list(dict.fromkeys([*segments.keys_in_order(), *text.keys_in_order()]))
    outcomes = [_segment_outcome(key, parsed.get(key), scp, text, segments) for key in utterances]
    utterance_keys = set(utterances)
    for key in scp.keys_in_order():
        if key in used_recordings or key in utterance_keys:
            continue
        if key in scp.bad:
            outcomes.append(Rejection(key, BAD_LINE, scp.bad[key].detail))
        else:
            outcomes.append(Rejection(key, NO_SEGMENTS, f"no line of {segments.name} uses recording {key}"))
    return outcomes


def _segment_outcome(key: str, segment: Segment | BadLine | None, scp: KeyedFile, text: KeyedFile, segments: KeyedFile) -> Candidate | Rejection:
    if isinstance(segment, BadLine) and key not in segments.bad and key not in segments.conflicts:
        return Rejection(key, BAD_LINE, segment.detail)
    location = None
    if isinstance(segment, Segment):
        recording = segment.recording
        if recording in scp.bad:
            return Rejection(key, BAD_LINE, f"recording {recording}: {scp.bad[recording].detail}")
        if recording in scp.conflicts:
            return Rejection(key, DUPLICATE_KEY, f"recording {recording}: different entries in {_where(scp, scp.conflicts[recording])}")
        entry = scp.entries.get(recording)
        if entry is None:
            return Rejection(key, NO_AUDIO, f"recording {recording} is not in {scp.name}")
        location = entry.value
    rejection = line_checks(key, text, (segments,), location)
    if rejection is not None:
        return rejection
    assert location is not None and isinstance(segment, Segment)  # line_checks rejects a key without audio
    return Candidate(key, text.entries[key].value, _absolute(location), segment)


def line_checks(key: str, transcript_file: KeyedFile, audio_files: Sequence[KeyedFile], location: str | None) -> Rejection | None:
    """The reasons a key can be rejected from the input lines alone; None when it passes."""
    for keyed in (*audio_files, transcript_file):
        if key in keyed.bad:
            return Rejection(key, BAD_LINE, keyed.bad[key].detail)
    for keyed in (*audio_files, transcript_file):
        if key in keyed.conflicts:
            return Rejection(key, DUPLICATE_KEY, f"different entries in {_where(keyed, keyed.conflicts[key])}")
    if key not in transcript_file.entries:
        return Rejection(key, NO_TRANSCRIPT, f"not in {transcript_file.name}")
    if location is None:
        return Rejection(key, NO_AUDIO, f"not in {audio_files[-1].name}")
    if not transcript_file.entries[key].value:
        return Rejection(key, EMPTY_TRANSCRIPT, f"{transcript_file.name}:{transcript_file.entries[key].lineno}: empty transcript")
    if location.rstrip().endswith("|"):
        return Rejection(key, UNSUPPORTED_ENTRY, f"{location!r}: command pipes are not supported; write the audio to files first")
    return None


def _where(keyed: KeyedFile, lines: Sequence[int]) -> str:
    return f"{keyed.name} lines {', '.join(str(line) for line in lines)}"


def _absolute(location: str) -> str:
    """URLs and absolute paths as written (as upstream does); relative paths against the working directory."""
    return location if location.startswith("/") or audio.is_url(location) else os.path.abspath(location)
