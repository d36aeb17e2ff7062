"""The user prompt written before the audio in every ChatML line, and the sidecar that records it.

Fun-ASR-Nano was trained with a small family of prompts (UPSTREAM.md §2): `语音转写：`, with a
target language `语音转写成英文：`, and without text normalisation `语音转写，不进行文本规整：`
(English forms: `Speech transcription:` ...). A fine-tuned model must be decoded with the prompt it
was trained with, so prep records its :class:`PromptPolicy` in a sidecar JSON beside the jsonl
(`<out-stem>.prompt.json`, see :func:`sidecar_path_for`); train and decode read it back with
:func:`read_sidecar`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from speechft.errors import ConfigError, InputError

ItnMode = Literal["auto", "on", "off"]
PromptStyle = Literal["zh", "en"]
ITN_MODES: tuple[str, ...] = ("auto", "on", "off")
PROMPT_STYLES: tuple[str, ...] = ("zh", "en")
SIDECAR_FORMAT = "speechft.prompt/1"

# Language codes users type, with the names the model's prompts use. Anything else given to
# --language is taken as the name itself (e.g. `--language 粤语`).
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "zh": ("中文", "Chinese"),
    "en": ("英文", "English"),
    "ja": ("日文", "Japanese"),
    "ko": ("韩文", "Korean"),
    "yue": ("粤语", "Cantonese"),
}


# Arabic numerals (ASCII and full-width) and `_` (connector punctuation, which `\w` includes).
_NUMERAL_OR_UNDERSCORE = re.compile(r"[0-9０-９_]")
# Everything that is neither a letter/digit nor whitespace; checked for category P one by one.
_OTHER = re.compile(r"[^\w\s]")


def has_written_form(transcript: str) -> bool:
    """True when the transcript has an Arabic numeral or a punctuation mark (Unicode category P).

    The guide's rule: a transcript with neither was not text-normalised (it reads as spoken), so it
    is paired with the no-normalisation prompt.
    """
    if _NUMERAL_OR_UNDERSCORE.search(transcript):
        return True
    return any(unicodedata.category(character).startswith("P") for character in _OTHER.findall(transcript))


@dataclass(frozen=True)
class PromptPolicy:
    """How the prompt of each utterance is chosen.

    - `language`: a code from LANGUAGE_NAMES or a language name; None for the plain prompt.
    - `itn`: `on` always asks for normalised text, `off` never (upstream's `itn=False`), `auto`
      decides per transcript with :func:`has_written_form`.
    - `style`: Chinese (`zh`, full-width `：`) or English (`en`) prompt wording.
    - `override`: a fixed prompt that replaces all of the above.
    """

    language: str | None = None
    itn: ItnMode = "auto"
    style: PromptStyle = "zh"
    override: str | None = None

    def __post_init__(self) -> None:
        if self.itn not in ITN_MODES:
            raise ConfigError(f"itn must be one of {', '.join(ITN_MODES)}, not {self.itn!r}")
        if self.style not in PROMPT_STYLES:
            raise ConfigError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, not {self.style!r}")
        if self.language is not None and not self.language.strip():
            raise ConfigError("language must not be empty; leave it out for the plain prompt")

    def prompt(self, normalised: bool) -> str:
        """The prompt asking for normalised (`True`) or verbatim (`False`) text."""
        if self.override is not None:
            return self.override
        names = LANGUAGE_NAMES.get(self.language.lower()) if self.language else None
        if self.style == "zh":
            language = names[0] if names else self.language
            text = f"语音转写成{language}" if language else "语音转写"
            if not normalised:
                text += "，不进行文本规整"
            return text + "："
        language = names[1] if names else self.language
        text = f"Transcribe speech into {language}" if language else "Speech transcription"
        if not normalised:
            text += " without text normalization"
        return text + ":"

    def prompt_for(self, transcript: str) -> str:
        """The prompt to train this transcript with."""
        if self.itn == "on":
            return self.prompt(True)
        if self.itn == "off":
            return self.prompt(False)
        return self.prompt(has_written_form(transcript))

    def to_json(self) -> dict[str, Any]:
        return {"language": self.language, "itn": self.itn, "style": self.style, "override": self.override}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromptPolicy:
        unknown = set(data) - {"language", "itn", "style", "override"}
        if unknown:
            raise ConfigError(f"unknown prompt policy key(s): {', '.join(sorted(unknown))}")
        return cls(
            language=data.get("language"),
            itn=data.get("itn", "auto"),
            style=data.get("style", "zh"),
            override=data.get("override"),
        )


@dataclass(frozen=True)
class PromptSidecar:
    """What prep wrote: the policy and how often each prompt was used in the training jsonl."""

    policy: PromptPolicy
    prompts_used: dict[str, int] = field(default_factory=dict)

    @property
    def decode_prompt(self) -> str:
        """The prompt to decode with when the user asks for nothing else.

        With `itn` on/off that mode's prompt; with `auto`, the prompt most utterances were trained
        with (ties go to the normalising prompt), since decoding must match training.
        """
        if self.policy.itn != "auto" or not self.prompts_used:
            return self.policy.prompt(self.policy.itn != "off")
        normalising = self.policy.prompt(True)
        return max(self.prompts_used, key=lambda prompt: (self.prompts_used[prompt], prompt == normalising))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "policy": self.policy.to_json(),
            "prompts_used": dict(self.prompts_used),
            "decode_prompt": self.decode_prompt,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromptSidecar:
        if data.get("format") != SIDECAR_FORMAT:
            raise ConfigError(f"not a speechft prompt sidecar (format {data.get('format')!r}, expected {SIDECAR_FORMAT!r})")
        return cls(
            policy=PromptPolicy.from_json(data.get("policy", {})),
            prompts_used={str(key): int(value) for key, value in data.get("prompts_used", {}).items()},
        )


def sidecar_path_for(jsonl: str | Path) -> Path:
    """`data/train.jsonl` -> `data/train.prompt.json`."""
    jsonl = Path(jsonl)
    stem = jsonl.name[: -len(".jsonl")] if jsonl.name.endswith(".jsonl") else jsonl.name
    return jsonl.with_name(f"{stem}.prompt.json")


def read_sidecar(path: str | Path) -> PromptSidecar:
    """Read a prompt sidecar; `path` may be the sidecar itself or the jsonl it belongs to."""
    path = Path(path)
    if not path.name.endswith(".prompt.json"):
        path = sidecar_path_for(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: prompt sidecar not found; run `speechft prep` to write it") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read prompt sidecar ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: prompt sidecar is not a JSON object")
    try:
        return PromptSidecar.from_json(data)
    except ConfigError as error:
        raise InputError(f"{path}: {error}") from None
