"""`key text` files (Kaldi `text`, `wav.scp`, decode output) read with line numbers.

Every reader here either returns each line or raises an :class:`InputError` naming the file and
line; nothing is skipped without the caller seeing it.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from speechft.errors import InputError

STDIO = "-"


@dataclass(frozen=True)
class KeyedLine:
    """One non-blank line: its 1-based number, the first field and the rest (may be empty)."""

    lineno: int
    key: str
    text: str


def split_key(line: str) -> tuple[str, str]:
    """Split `key<whitespace>text`; text keeps its inner spacing, loses outer whitespace."""
    parts = line.strip().split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield `(lineno, line)` for every line, without the newline; `-` reads stdin.

    Invalid UTF-8 raises InputError with the line number.
    """
    name = str(path)
    if name == STDIO:
        stream: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115  (closed in the finally below; stdin is left open)
        except FileNotFoundError:
            raise InputError(f"{name}: file not found") from None
        except OSError as error:
            raise InputError(f"{name}: cannot open ({error.strerror})") from None
        close = True
    try:
        for lineno, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"{name}:{lineno}: invalid UTF-8 at byte {error.start}; convert the file to UTF-8 (e.g. iconv -f GBK -t UTF-8)") from None
            yield lineno, line.rstrip("\r\n")
    finally:
        if close:
            stream.close()


def iter_keyed(path: str | Path) -> Iterator[KeyedLine]:
    """Yield each non-blank line of a `key text` file; blank lines are skipped (they hold nothing)."""
    for lineno, line in iter_lines(path):
        key, text = split_key(line)
        if key:
            yield KeyedLine(lineno, key.lstrip("\ufeff"), text)


def read_keyed(path: str | Path, *, what: str = "file") -> dict[str, str]:
    """Read a `key text` file into an ordered dict; a repeated key is an error naming both lines."""
    seen: dict[str, int] = {}
    result: dict[str, str] = {}
    for entry in iter_keyed(path):
        if entry.key in seen:
            raise InputError(f"{path}:{entry.lineno}: duplicate key {entry.key!r} in {what} (first at line {seen[entry.key]}); keys must be unique")
        seen[entry.key] = entry.lineno
        result[entry.key] = entry.text
    return result


@contextlib.contextmanager
def open_output(path: str | Path) -> Iterator[IO[str]]:
    """Open a UTF-8 text output; `-` writes to stdout. Parent directories are created."""
    if str(path) == STDIO:
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
        try:
            yield stream
        finally:
            stream.flush()
            stream.detach()
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Opened apart from the `with` so that only a failure to open becomes the InputError below.
        handle = open(target, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
    except OSError as error:
        raise InputError(f"{target}: cannot write ({error.strerror})") from None
    with handle:
        yield handle
