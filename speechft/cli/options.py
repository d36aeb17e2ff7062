"""Options several commands share, defined once so their flags and help read the same everywhere.

Use them as parameter types: `model_dir: options.ModelDir`, `allow_missing: options.AllowMissing = False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_MODEL_DIR_HELP = "Fun-ASR-Nano directory (config.yaml, model.pt, Qwen3-0.6B/): the official release or a `speechft train` output directory."
_LANGUAGE_HELP = "Ask for this language in the prompt: zh, en, ja, ko, yue or a name (`语音转写成英文：`)."

ModelDir = Annotated[Path, typer.Option("--model-dir", help=_MODEL_DIR_HELP, show_default=False)]
OptionalModelDir = Annotated[Path | None, typer.Option("--model-dir", help=_MODEL_DIR_HELP, show_default=False)]
AllowMissing = Annotated[bool, typer.Option("--allow-missing", help="Accept a model.pt that lacks some weights (they stay random).")]
Language = Annotated[str | None, typer.Option("--language", help=_LANGUAGE_HELP, show_default=False)]
Prompt = Annotated[str | None, typer.Option("--prompt", help="Use exactly this prompt for every utterance.", show_default=False)]
