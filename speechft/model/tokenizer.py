"""The Qwen3 tokenizer of a Fun-ASR-Nano directory, loaded from local files only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechft.errors import InputError


def tokenizer_dir_for(model_dir: str | Path | None = None, tokenizer: str | Path | None = None) -> Path:
    """Where the tokenizer lives: `tokenizer` if given, else `<model_dir>/Qwen3-0.6B`."""
    if tokenizer is not None:
        return Path(tokenizer)
    if model_dir is None:
        raise InputError("no tokenizer: pass --model-dir DIR (with DIR/Qwen3-0.6B) or --tokenizer DIR")
    return Path(model_dir) / "Qwen3-0.6B"


def load_tokenizer(directory: str | Path) -> Any:
    """Load a Hugging Face tokenizer from a local directory; never touches the network."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: tokenizer directory not found (expected the Qwen3-0.6B folder)")
    if not any((directory / name).exists() for name in ("tokenizer.json", "vocab.json")):
        raise InputError(f"{directory}: no tokenizer.json or vocab.json; is this the Qwen3-0.6B folder?")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{directory}: cannot load tokenizer ({error})") from None
