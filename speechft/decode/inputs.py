"""What to decode: `key path-or-URL` lines with one prompt, or a prep jsonl whose lines carry their own."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from speechft.errors import InputError
from speechft.io.textfile import iter_keyed, iter_lines

SPEECH_PATTERN = re.compile(r"<\|startofspeech\|>!(.*?)<\|endofspeech\|>", re.DOTALL)


@dataclass(frozen=True)
class DecodeItem:
    """One utterance to decode: its key, audio path or URL, and the prompt to decode it with."""

    key: str
    source: str
    prompt: str


def read_scp_items(path: str | Path, prompt: str) -> list[DecodeItem]:
    """`key path-or-URL` lines, each decoded with `prompt`. Duplicate keys are an error."""
    items: list[DecodeItem] = []
    seen: dict[str, int] = {}
    for entry in iter_keyed(path):
        if entry.key in seen:
            raise InputError(f"{path}:{entry.lineno}: duplicate key {entry.key!r} (first at line {seen[entry.key]})")
        if not entry.text:
            raise InputError(f"{path}:{entry.lineno}: key {entry.key!r} has no audio path; expected `key path`")
        seen[entry.key] = entry.lineno
        items.append(DecodeItem(entry.key, entry.text, prompt))
    return items


def read_jsonl_items(path: str | Path) -> list[DecodeItem]:
    """A `speechft prep` jsonl: each line decoded with its own user prompt."""
    items: list[DecodeItem] = []
    seen: set[str] = set()
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
            user = next(m["content"] for m in record["messages"] if m["role"] == "user")
        except (json.JSONDecodeError, KeyError, TypeError, StopIteration):
            raise InputError(f"{where}: not a prep jsonl line (need messages with a user turn)") from None
        match = SPEECH_PATTERN.search(user)
        if match is None:
            raise InputError(f"{where}: user turn has no <|startofspeech|>!PATH<|endofspeech|>")
        key = str(record.get("key") or f"line{lineno}")
        if key in seen:
            raise InputError(f"{where}: duplicate key {key!r}")
        seen.add(key)
        items.append(DecodeItem(key, match.group(1), user[: match.start()]))
    return items
