"""Why an utterance is left out (:class:`Rejection`) or kept with a warning: the names prep reports.

Every stage returns, per utterance, either its next value or a `Rejection`; the reason names below
are what `rejects.tsv` and the summary show, in the order the summary lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from speechft.data import audio

BAD_LINE = "bad_line"
DUPLICATE_KEY = "duplicate_key"
NO_TRANSCRIPT = "no_transcript"
NO_AUDIO = "no_audio"
NO_SEGMENTS = "no_segments"
EMPTY_TRANSCRIPT = "empty_transcript"
UNSUPPORTED_ENTRY = "unsupported_entry"
FILE_MISSING = audio.FILE_MISSING
UNREADABLE_AUDIO = audio.UNREADABLE_AUDIO
URL_UNREACHABLE = audio.URL_UNREACHABLE
ZERO_LENGTH = "zero_length"
BAD_SEGMENT = "bad_segment"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
TOO_MANY_TOKENS = "too_many_tokens"
REJECT_REASONS: dict[str, str] = {
    BAD_LINE: "line unreadable (invalid UTF-8, no separator, missing fields)",
    DUPLICATE_KEY: "key given twice with different content",
    NO_TRANSCRIPT: "audio without a line in text",
    NO_AUDIO: "transcript without audio (not in wav.scp / segments)",
    NO_SEGMENTS: "recording no segment uses",
    EMPTY_TRANSCRIPT: "transcript is empty",
    UNSUPPORTED_ENTRY: "wav.scp entry is a command pipe",
    FILE_MISSING: "audio file does not exist",
    UNREADABLE_AUDIO: "audio unreadable or corrupt",
    URL_UNREACHABLE: "audio URL could not be downloaded",
    ZERO_LENGTH: "audio has no samples",
    BAD_SEGMENT: "segment outside its recording",
    TOO_SHORT: "fewer fbank frames than the minimum",
    TOO_LONG: "more fbank frames than the maximum",
    TOO_MANY_TOKENS: "transcript longer than the token maximum",
}

# Warnings: the utterance is kept, the summary counts it and names a few examples.
RESAMPLED = "resampled"
DOWNMIXED = "downmixed"
REPEATED_LINE = "repeated_line"
WARNINGS: dict[str, str] = {
    RESAMPLED: "sample rate is not 16 kHz (resampled when loaded)",
    DOWNMIXED: "more than one channel (averaged to mono when loaded)",
    REPEATED_LINE: "identical line given twice (used once)",
}


@dataclass(frozen=True)
class Rejection:
    """One utterance left out: its key, a reason from :data:`REJECT_REASONS` and what exactly was wrong."""

    key: str
    reason: str
    detail: str

    def tsv_line(self) -> str:
        """`key<TAB>reason<TAB>detail`, tabs and line breaks inside a field turned into spaces."""
        return f"{_tsv_field(self.key)}\t{self.reason}\t{_tsv_field(self.detail)}"


def _tsv_field(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines())
