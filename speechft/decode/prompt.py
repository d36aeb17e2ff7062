"""The prompt a model is decoded with: by default the one it was trained with.

`speechft train` leaves `prompt.json` (the prep sidecar) in its output directory; decoding such a
directory without options uses that sidecar's decode prompt, so a fine-tuned model hears the
prompt it learned. `--language`, `--no-itn` and hotwords build the upstream prompt variants
(UPSTREAM.md §4) instead, with a warning when they differ from what the model was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechft.data.prompts import PromptPolicy, PromptSidecar
from speechft.errors import ConfigError, InputError

MODEL_PROMPT_FILE = "prompt.json"
DEFAULT_PROMPT = PromptPolicy().prompt(True)


def hotword_prefix(hotwords: Sequence[str]) -> str:
    """The context block Fun-ASR-Nano reads before the task prompt when hotwords are given."""
    if not hotwords:
        return ""
    return f"请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。\n\n\n**上下文信息：**\n\n\n热词列表：[{', '.join(hotwords)}]\n"


def read_model_prompt(model_dir: str | Path) -> PromptSidecar | None:
    """The prompt sidecar stored with a model directory, or None (the official release has none)."""
    path = Path(model_dir) / MODEL_PROMPT_FILE
    if not path.exists():
        return None
    try:
        return PromptSidecar.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ConfigError, AttributeError) as error:
        raise InputError(f"{path}: cannot read the model's prompt record ({error})") from None


def read_hotwords(hotwords: str | None, hotword_file: str | Path | None) -> list[str]:
    """Comma-separated `--hotwords` plus one hotword per line of `--hotword-file`, in order, unique."""
    words: list[str] = []
    if hotwords:
        words.extend(word.strip() for word in hotwords.split(","))
    if hotword_file is not None:
        try:
            words.extend(Path(hotword_file).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{hotword_file}: cannot read hotwords ({error})") from None
    return list(dict.fromkeys(word.strip() for word in words if word.strip()))


@dataclass(frozen=True)
class PromptChoice:
    prompt: str
    """The full user prompt (hotword context included)."""
    source: str
    """Where it came from, for the run's header line."""
    warning: str | None = None
    """Set when the prompt differs from the one the model was trained with."""


def choose_prompt(
    recorded: PromptSidecar | None,
    *,
    language: str | None = None,
    no_itn: bool = False,
    prompt: str | None = None,
    hotwords: Sequence[str] = (),
) -> PromptChoice:
    """Decide the decode prompt: explicit `prompt`, else the language/ITN variant asked for, else
    the recorded training prompt, else the release's default `语音转写：`."""
    trained = recorded.decode_prompt if recorded is not None else None
    if prompt is not None:
        task, source = prompt, "--prompt"
    elif language is not None or no_itn:
        style = recorded.policy.style if recorded is not None else "zh"
        task = PromptPolicy(language=language, itn="off" if no_itn else "on", style=style).prompt(not no_itn)
        source = "--language/--no-itn"
    elif trained is not None:
        task, source = trained, "the model's training prompt (prompt.json)"
    else:
        task, source = DEFAULT_PROMPT, "the default prompt"
    warning = None
    if trained is not None and task != trained:
        warning = f"decoding with {task!r} but the model was trained with {trained!r}; expect worse output"
    return PromptChoice(hotword_prefix(hotwords) + task, source, warning)
