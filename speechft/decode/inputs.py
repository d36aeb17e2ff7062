"""What to decode: `key path-or-URL` lines with one prompt, or a prep jsonl whose lines carry their own."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from speechft.decode.prompt import choose_prompt, hotword_prefix, read_model_prompt
from speechft.errors import InputError, UsageError
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


@dataclass(frozen=True)
class DecodeInputs:
    """The utterances of one decode run, how their prompts were chosen, and a warning about that choice."""

    items: list[DecodeItem]
    prompts: str
    """E.g. "with prompt '语音转写：' (the model's training prompt)", for the run's first message."""
    warnings: list[str] = field(default_factory=list)


def read_inputs(
    model_dir: Path,
    *,
    scp: Path | None,
    jsonl: Path | None,
    hotwords: list[str],
    language: str | None = None,
    no_itn: bool = False,
    prompt: str | None = None,
) -> DecodeInputs:
    """Exactly one of `scp` (decoded with the prompt chosen for `model_dir`) or `jsonl` (its own prompts)."""
    if (scp is None) == (jsonl is None):
        raise UsageError("give exactly one of --scp or --jsonl")
    if jsonl is not None:
        if prompt is not None or language is not None or no_itn:
            raise UsageError("--jsonl lines carry their own prompts; --prompt/--language/--no-itn apply to --scp only")
        items = read_jsonl_items(jsonl)
        if hotwords:
            items = [replace(item, prompt=hotword_prefix(hotwords) + item.prompt) for item in items]
        return DecodeInputs(items, f"from {jsonl} with their own prompts")
    if not (model_dir / "config.yaml").exists():
        raise InputError(f"{model_dir}: no config.yaml; is this a Fun-ASR-Nano model directory?")
    choice = choose_prompt(read_model_prompt(model_dir), language=language, no_itn=no_itn, prompt=prompt, hotwords=hotwords)
    items = read_scp_items(scp, choice.prompt)  # type: ignore[arg-type]  # scp is set: exactly one of the two is
    return DecodeInputs(items, f"with prompt {choice.prompt!r} ({choice.source})", [choice.warning] if choice.warning else [])
