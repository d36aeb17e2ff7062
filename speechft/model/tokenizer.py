"""The Qwen3 tokenizer of a Fun-ASR-Nano directory, loaded from local files only.

Also builds tiny byte-level BPE tokenizers in the same on-disk layout, with the Qwen chat special
tokens, so tests and the bundled demo model never need a hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from speechft.errors import InputError

# The tokens the ChatML template and generation rely on; ids follow the base vocabulary in this order.
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


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


def build_tiny_tokenizer(directory: str | Path, corpus: Iterable[str], vocab_size: int = 400) -> Path:
    """Train a byte-level BPE on `corpus` and save it as a Qwen2-style tokenizer in `directory`.

    The special tokens come first (ids 0..2) so every tiny tokenizer agrees on them; `<|im_end|>`
    is the end-of-sequence token as in Qwen3.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHAT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    bpe.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_prefix_space": False,
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory
