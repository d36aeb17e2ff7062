"""Tolerant readers for Kaldi `wav.scp`, `text` and `segments`.

Unlike :mod:`speechft.io.textfile`, which stops at the first bad line, these readers keep going
and report every bad line, duplicate and conflict by key and line number, so prep can reject each
affected key on its own and keep the rest of the corpus.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from speechft.errors import InputError
from speechft.io.textfile import STDIO


class Entry(NamedTuple):
    """A well-formed line: its 1-based number, key and value (the rest of the line, stripped).

    A named tuple rather than a dataclass: one is built per corpus line, and tuples build fastest.
    """

    lineno: int
    key: str
    value: str


@dataclass(frozen=True)
class BadLine:
    """A line that cannot be used; `key` is the first field as far as it could be read."""

    lineno: int
    key: str
    detail: str


@dataclass
class KeyedFile:
    """One file read by key, in first-appearance order.

    - `entries`: first good line of each key (conflicting keys included, see `conflicts`).
    - `conflicts`: keys given again with a different value -> every line number they appear on.
    - `repeats`: keys given again with the same value -> line numbers of the repeats (harmless).
    - `bad`: keys whose line could not be read (first bad line per key).
    """

    name: str
    entries: dict[str, Entry] = field(default_factory=dict)
    conflicts: dict[str, list[int]] = field(default_factory=dict)
    repeats: dict[str, list[int]] = field(default_factory=dict)
    bad: dict[str, BadLine] = field(default_factory=dict)

    def keys_in_order(self) -> list[str]:
        """Every key mentioned, good or bad, each once, in order of first appearance."""
        ordered: dict[str, int] = {key: entry.lineno for key, entry in self.entries.items()}
        for key, bad_line in self.bad.items():
            ordered[key] = min(ordered.get(key, bad_line.lineno), bad_line.lineno)
        return sorted(ordered, key=ordered.__getitem__)


def _read_bytes(path: str | Path) -> bytes:
    if str(path) == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None


def read_keyed_file(path: str | Path, *, value_required: bool, what: str) -> KeyedFile:
    """Read a `key value` file, collecting problems instead of raising on them.

    `value_required`: a line holding only a key is bad (wav.scp); otherwise a key followed by
    whitespace alone has an empty value (an empty Kaldi transcript). A key with no whitespace after
    it is always a bad line: usually a missing separator (`utt1甚至...`), not an empty transcript.
    """
    result = KeyedFile(name=str(path))
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines: list[str] | list[bytes] = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = data.split(b"\n")  # decode line by line to name the bad ones
    for lineno, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                fields_read = raw.decode("utf-8", errors="replace").split(maxsplit=1)
                if fields_read:
                    detail = f"{path}:{lineno}: invalid UTF-8 at byte {error.start}; convert the file to UTF-8 (e.g. iconv -f GBK -t UTF-8)"
                    _add_bad(result, BadLine(lineno, fields_read[0], detail))
                continue
        else:
            line = raw
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        key = fields[0]
        if len(fields) == 1:
            if value_required:
                _add_bad(result, BadLine(lineno, key, f"{path}:{lineno}: no {what} after the key"))
                continue
            after_key = line.lstrip()[len(key) :].rstrip("\r")
            if not after_key:  # nothing after the key, not even a separator
                _add_bad(result, BadLine(lineno, key, f"{path}:{lineno}: no whitespace between key and {what}"))
                continue
            value = ""
        else:
            value = fields[1].rstrip()
        _add_entry(result, Entry(lineno, key, value))
    return result


def _add_bad(result: KeyedFile, bad_line: BadLine) -> None:
    result.bad.setdefault(bad_line.key, bad_line)


def _add_entry(result: KeyedFile, entry: Entry) -> None:
    first = result.entries.get(entry.key)
    if first is None:
        result.entries[entry.key] = entry
    elif first.value == entry.value:
        result.repeats.setdefault(entry.key, []).append(entry.lineno)
    else:
        lines = result.conflicts.setdefault(entry.key, [first.lineno])
        lines.append(entry.lineno)


@dataclass(frozen=True)
class Segment:
    """`segment-id recording-id start end` (seconds; end -1 means the end of the recording)."""

    lineno: int
    key: str
    recording: str
    start_s: float
    end_s: float


def parse_segment(entry: Entry, path: str | Path) -> Segment | BadLine:
    fields = entry.value.split()
    where = f"{path}:{entry.lineno}"
    if len(fields) != 3:
        return BadLine(entry.lineno, entry.key, f"{where}: expected `segment recording start end`, got {len(fields) + 1} fields")
    try:
        start_s, end_s = float(fields[1]), float(fields[2])
    except ValueError:
        return BadLine(entry.lineno, entry.key, f"{where}: start/end {fields[1]!r} {fields[2]!r} are not numbers")
    if start_s < 0 or (end_s != -1 and end_s <= start_s):
        return BadLine(entry.lineno, entry.key, f"{where}: segment {start_s}..{end_s} s is empty or negative")
    return Segment(entry.lineno, entry.key, fields[0], start_s, end_s)
