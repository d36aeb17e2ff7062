"""The training manifest: one ChatML jsonl line per utterance (UPSTREAM.md §2), the format prep writes and training reads.

- :func:`chatml_line` writes one line, as prep does (byte for byte what `json.dumps` would give).
- :func:`read_manifest` parses a jsonl into :class:`Utterance` records. A line that cannot be used
  (bad JSON, missing fields, a user turn without the `!` that marks an audio path, which upstream
  would silently train text-only) is a :class:`Skip` with its key, place and reason.
- :func:`scan_line` / :data:`CANONICAL_LINES` recognise a line in prep's exact layout that
  `parse_line` accepts without building its record (the training index reads millions of lines);
  anything else goes through `parse_line`, the one definition of a usable line.
- :class:`TrainSource` is one `--train FILE[:WEIGHT]`; :func:`hours_of` sums a manifest's audio
  without opening any; :func:`filter_lengths` applies the data section's length limits.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechft.data import audio
from speechft.errors import InputError

# fbank frames per LFR frame (the released frontend's lfr_n): the feature axis a batch pads.
LFR_STRIDE = 6
SPEECH_PATTERN = re.compile(r"^(?P<prompt>.*?)<\|startofspeech\|>(?P<audio>.*?)<\|endofspeech\|>(?P<suffix>.*)$", re.S)


@dataclass(frozen=True)
class Utterance:
    """One usable jsonl line."""

    key: str
    audio: str
    system: str
    prompt: str
    suffix: str
    text: str
    speech_frames: int  # fbank frames, 10 ms each (`speech_length`)
    text_tokens: int  # transcript tokens (`text_length`)
    where: str  # file:line, for messages

    @property
    def batch_tokens(self) -> int:
        """What the token budget counts for this utterance, as upstream does."""
        return self.speech_frames + self.text_tokens

    @property
    def seconds(self) -> float:
        return self.speech_frames / 100.0

    @property
    def sort_key(self) -> tuple[int, int]:
        """Batches pad two axes, LFR frames and LLM tokens (prompt + audio tokens + transcript).
        Sorting by LFR frames, then transcript tokens, lines both up; sorting by their sum lets
        utterances of one frame count interleave with long and short transcripts."""
        return (-(-self.speech_frames // LFR_STRIDE), self.text_tokens)


@dataclass(frozen=True)
class Skip:
    """A line or sample left out, and why."""

    key: str
    reason: str
    where: str = ""


@dataclass(frozen=True)
class TrainSource:
    """One `--train` file and its weight: utterances drawn per epoch = weight x lines."""

    path: Path
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> TrainSource:
        """`a.jsonl` or `a.jsonl:0.2`."""
        path, _, tail = text.rpartition(":")
        if path and re.fullmatch(r"[0-9]*\.?[0-9]+(e-?[0-9]+)?", tail):
            weight = float(tail)
            if weight <= 0:
                raise InputError(f"--train {text}: the weight after ':' must be > 0")
            return cls(Path(path), weight)
        return cls(Path(text), 1.0)


def parse_line(line: str, where: str, fallback_key: str) -> Utterance | Skip:
    """One jsonl line -> Utterance, or Skip naming what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return Skip(fallback_key, f"not valid JSON ({error.msg})", where)
    if not isinstance(record, dict):
        return Skip(fallback_key, "not a JSON object", where)
    key = str(record.get("key") or fallback_key)
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return Skip(key, "no `messages` list", where)
    roles = [m.get("role") for m in messages]
    if roles != ["system", "user", "assistant"]:
        return Skip(key, f"messages must be system, user, assistant (got {', '.join(map(str, roles))})", where)
    system, user, assistant = (str(m.get("content", "")) for m in messages)
    match = SPEECH_PATTERN.match(user)
    if match is None:
        return Skip(key, "user turn has no <|startofspeech|>...<|endofspeech|> audio", where)
    location = match["audio"]
    if not location.startswith("!"):
        return Skip(key, "user turn has no '!' before the audio path (upstream would silently train text-only)", where)
    location = location[1:]
    if not location:
        return Skip(key, "empty audio path", where)
    if not assistant.strip():
        return Skip(key, "empty transcript", where)
    try:
        speech_frames = int(record["speech_length"]) if "speech_length" in record else -1
        text_tokens = int(record["text_length"]) if "text_length" in record else -1
    except (TypeError, ValueError):
        return Skip(key, "speech_length/text_length are not integers", where)
    return Utterance(key, location, system, match["prompt"], match["suffix"], assistant, speech_frames, text_tokens, where)


# A JSON string's contents; `_PLAIN` also excludes escapes, so its raw bytes are the decoded text.
_STRING = rb'(?:[^"\\\x00-\x1f]++|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*+'
_PLAIN = rb'[^"\\\x00-\x1f]'


def _plain_until(marker: bytes) -> bytes:
    """Escape-free text up to the first `marker` (each '<' looks ahead; the rest runs)."""
    return rb'[^"\\\x00-\x1f<]*+(?:(?!' + re.escape(marker) + rb')<[^"\\\x00-\x1f<]*+)*+'


# The exact layout `chatml_line` (and `json.dumps` of the same record) writes: key, the three turns,
# the two lengths, with no escape in the key or the user turn. Such a line is valid JSON, and its
# user turn splits as SPEECH_PATTERN splits it: prompt, `!` and a non-empty path, suffix.
CANONICAL_LINE = re.compile(
    rb'\{"key": "(?P<key>' + _PLAIN + rb'++)", "messages": \[\{"role": "system", "content": "' + _STRING + rb'"\}, '
    rb'\{"role": "user", "content": "'
    + _plain_until(b"<|startofspeech|>")
    + rb"<\|startofspeech\|>!(?!<\|endofspeech\|>)(?="
    + _PLAIN
    + rb")"
    + _plain_until(b"<|endofspeech|>")
    + rb"<\|endofspeech\|>"
    + _STRING
    + rb'"\}, '
    rb'\{"role": "assistant", "content": "(?P<text>' + _STRING + rb')"\}\], '
    rb'"speech_length": (?P<frames>0|[1-9][0-9]{0,9}), "text_length": (?P<tokens>0|[1-9][0-9]{0,9})\}'
)


_SPACE_LEADS = frozenset(b"\xe1\xe2\xe3")
# The same, found line by line in a block of many.
CANONICAL_LINES = re.compile(rb"(?m)^" + CANONICAL_LINE.pattern + rb"$")


def canonical_fields(found: re.Match[bytes]) -> tuple[bytes, int, int] | None:
    """(key as UTF-8, speech frames, text tokens) of a CANONICAL_LINE match in UTF-8 text, or None
    when parse_line must decide: a transcript with escapes, or one that may be blank."""
    key, text, frames, tokens = found.group("key", "text", "frames", "tokens")
    return (key, int(frames), int(tokens)) if plain_transcript(text) else None


def plain_transcript(text: bytes) -> bool:
    """Whether a CANONICAL_LINE transcript is one parse_line accepts as it stands: no escapes, not blank."""
    if not text or b"\\" in text:
        return False
    # A first byte that starts no whitespace character (printable ASCII, or a UTF-8 lead byte of
    # none of U+0085..U+3000's spaces) settles it without decoding.
    return 33 <= text[0] < 127 or (text[0] >= 0xC3 and text[0] not in _SPACE_LEADS) or bool(text.decode("utf-8").strip())


def scan_line(raw: bytes) -> tuple[bytes, int, int] | None:
    """(key as UTF-8, speech frames, text tokens) of a UTF-8 line in prep's exact layout that
    `parse_line` accepts, found without building the record; None for any other line (parse it then)."""
    found = CANONICAL_LINE.fullmatch(raw)
    return canonical_fields(found) if found is not None else None


def _speech_frames_from_header(location: str, url_cache_dir: str | Path | None = None) -> int:
    return max(0, audio.read_info(location, cache_dir=url_cache_dir).fbank_frames)


def complete_lengths(parsed: Utterance | Skip, tokenizer: Any = None, url_cache_dir: str | Path | None = None) -> Utterance | Skip:
    """A parsed line with its missing `speech_length` read from the audio header and its missing
    `text_length` counted with `tokenizer` (an InputError without one)."""
    if isinstance(parsed, Skip) or (parsed.speech_frames >= 0 and parsed.text_tokens >= 0):
        return parsed
    try:
        frames = parsed.speech_frames if parsed.speech_frames >= 0 else _speech_frames_from_header(parsed.audio, url_cache_dir)
    except audio.AudioError as error:
        return Skip(parsed.key, f"audio unreadable ({error.detail})", parsed.where)
    tokens = parsed.text_tokens
    if tokens < 0:
        if tokenizer is None:
            raise InputError(f"{parsed.where}: no text_length; run `speechft prep` to write it")
        tokens = len(tokenizer.tokenize(parsed.text))
    return dataclasses.replace(parsed, speech_frames=frames, text_tokens=tokens)


def read_manifest(path: str | Path, tokenizer: Any = None, url_cache_dir: str | Path | None = None) -> tuple[list[Utterance], list[Skip]]:
    """All usable utterances of a jsonl, and the skipped lines.

    Missing `speech_length` is read from the audio header (URLs are downloaded into
    `url_cache_dir` when given); missing `text_length` is counted with `tokenizer` (required
    then). Raises InputError when the file is missing or nothing is usable.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    utterances: list[Utterance] = []
    skipped: list[Skip] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(Skip(f"line-{number}", "not UTF-8", where))
            continue
        if not line.strip():
            continue
        parsed = complete_lengths(parse_line(line, where, f"line-{number}"), tokenizer, url_cache_dir)
        if isinstance(parsed, Skip):
            skipped.append(parsed)
        else:
            utterances.append(parsed)
    if not utterances:
        reasons = "; ".join(sorted({s.reason for s in skipped})[:3]) or "the file is empty"
        raise InputError(f"{path}: no usable lines ({reasons})")
    return utterances, skipped


def length_problem(batch_tokens: int, speech_frames: int, *, max_sample_tokens: int, min_speech_frames: int) -> str | None:
    """Why an utterance is too long for a batch or too short to be speech; None when it is neither."""
    if batch_tokens > max_sample_tokens:
        return f"{batch_tokens} tokens > data.max_sample_tokens {max_sample_tokens}"
    if speech_frames < min_speech_frames:
        return f"{speech_frames} fbank frames < data.min_speech_frames {min_speech_frames}"
    return None


def filter_lengths(utterances: Sequence[Utterance], *, max_sample_tokens: int, min_speech_frames: int) -> tuple[list[Utterance], list[Skip]]:
    """Drop utterances too long for a batch or too short to be speech, each with its reason."""
    kept, skipped = [], []
    for utterance in utterances:
        problem = length_problem(utterance.batch_tokens, utterance.speech_frames, max_sample_tokens=max_sample_tokens, min_speech_frames=min_speech_frames)
        if problem:
            skipped.append(Skip(utterance.key, problem, utterance.where))
        else:
            kept.append(utterance)
    return kept, skipped


def hours_of(paths: Sequence[str | Path]) -> float:
    """Hours of audio in jsonl files from their `speech_length` fields (fast: no audio is opened)."""
    frames = 0
    for path in paths:
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    found = re.search(rb'"speech_length"\s*:\s*([0-9]+)', line)
                    if found:
                        frames += int(found.group(1))
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    return frames / 100.0 / 3600.0


SYSTEM_PROMPT = "You are a helpful assistant."
_SYSTEM_JSON = json.dumps(SYSTEM_PROMPT)
# The standard library's own string encoder, as `json.dumps(..., ensure_ascii=False)` uses it.
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def chatml_line(key: str, prompt: str, location: str, transcript: str, speech_length: int, text_length: int) -> str:
    """One jsonl line as prep writes it: the upstream schema plus `key`; `!` marks the audio path.

    Byte for byte what `json.dumps(record, ensure_ascii=False)` gives for the record
    `{"key", "messages": [system, user, assistant], "speech_length", "text_length"}`, built from
    pieces (only the strings encoded per line), which is several times faster at tens of
    thousands of lines.
    """
    user = f"{prompt}<|startofspeech|>!{location}<|endofspeech|>"
    return (
        f'{{"key": {_json_string(key)}, "messages": [{{"role": "system", "content": {_SYSTEM_JSON}}}, '
        f'{{"role": "user", "content": {_json_string(user)}}}, '
        f'{{"role": "assistant", "content": {_json_string(transcript)}}}], '
        f'"speech_length": {speech_length}, "text_length": {text_length}}}'
    )
