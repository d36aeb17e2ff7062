"""Tiny byte-level BPE tokenizers in the Qwen3-0.6B on-disk layout, with the Qwen chat special tokens.

Tests, the bundled demo model and the benchmarks use them so nothing needs a hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from speechft.data.tokens import QWEN_SPLIT_REGEX

# The tokens the ChatML template and generation rely on; ids follow the base vocabulary in this order.
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


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


def write_qwen_pipeline(directory: str | Path) -> Path:
    """Give a tokenizer made by :func:`build_tiny_tokenizer` the Qwen3 `tokenizer.json` pipeline.

    Tests and the benchmark use this so a tiny tokenizer takes the same direct path as the real
    Qwen3-0.6B one; transformers builds the same pipeline from the class either way.
    """
    path = Path(directory) / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["normalizer"] = {"type": "NFC"}
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_SPLIT_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return Path(directory)
