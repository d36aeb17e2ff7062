"""`text_length` for many transcripts at once: `len(tokenizer.tokenize(text))`, batched.

The Qwen3 tokenizer's `tokenizer.json` already holds the exact pipeline transformers' Qwen2
tokenizer applies (NFC, the Qwen split regex, byte-level BPE). When the file matches that pipeline
field for field, it is run directly with the `tokenizers` library: same counts, without importing
transformers (which pulls in torch: seconds, more than prep's whole work on 20k utterances).
Any other tokenizer directory goes through transformers as `load_tokenizer` loads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechft.errors import InputError

# transformers' Qwen2Tokenizer pre-tokenisation regex (also in Qwen3-0.6B/tokenizer.json).
QWEN_SPLIT_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN_TOKENIZER_CLASSES = ("Qwen2Tokenizer", "Qwen2TokenizerFast")
BATCH_SIZE = 4096


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read ({error})") from None


def matches_qwen_pipeline(tokenizer_json: Any, tokenizer_config: Any) -> bool:
    """True when `tokenizer.json` runs exactly what transformers' Qwen2 tokenizer would run."""
    if not isinstance(tokenizer_json, dict) or not isinstance(tokenizer_config, dict):
        return False
    if tokenizer_config.get("tokenizer_class") not in QWEN_TOKENIZER_CLASSES:
        return False
    if tokenizer_json.get("normalizer") != {"type": "NFC"}:
        return False
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return False
    split, byte_level = steps
    add_prefix_space = bool(tokenizer_config.get("add_prefix_space") or False)
    if not (
        split.get("type") == "Split"
        and split.get("pattern") == {"Regex": QWEN_SPLIT_REGEX}
        and split.get("behavior") == "Isolated"
        and split.get("invert") is False
        and byte_level.get("type") == "ByteLevel"
        and byte_level.get("use_regex") is False
        and bool(byte_level.get("add_prefix_space")) == add_prefix_space
    ):
        return False
    model = tokenizer_json.get("model") or {}
    if not (
        model.get("type") == "BPE"
        and model.get("dropout") is None
        and model.get("unk_token") is None
        and not model.get("byte_fallback")
        and not model.get("fuse_unk")
        and not model.get("ignore_merges")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
    ):
        return False
    in_file = {token.get("content") for token in tokenizer_json.get("added_tokens") or []}
    declared = tokenizer_config.get("added_tokens_decoder") or {}
    return all(entry.get("content") in in_file for entry in declared.values())


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens of transcripts as `len(tokenizer.tokenize(text))` does (no special tokens added)."""

    backend: Any  # a `tokenizers.Tokenizer`
    source: str  # "tokenizer.json" (direct) or "transformers"

    def count(self, texts: Sequence[str]) -> list[int]:
        # Corpora repeat transcripts (prompts read by many speakers): each distinct text once.
        distinct = list(dict.fromkeys(texts))
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        counts: list[int] = []
        for start in range(0, len(distinct), BATCH_SIZE):
            batch = distinct[start : start + BATCH_SIZE]
            counts.extend(len(encoding.ids) for encoding in encode(batch, add_special_tokens=False))
        by_text = dict(zip(distinct, counts))
        return [by_text[text] for text in texts]


def load_token_counter(directory: str | Path) -> TokenCounter:
    """The counter for a local tokenizer directory (never a hub)."""
    directory = Path(directory)
    tokenizer_json = _read_json(directory / "tokenizer.json") if directory.is_dir() else None
    tokenizer_config = _read_json(directory / "tokenizer_config.json") if directory.is_dir() else None
    if matches_qwen_pipeline(tokenizer_json, tokenizer_config):
        from tokenizers import Tokenizer

        try:
            return TokenCounter(Tokenizer.from_file(str(directory / "tokenizer.json")), "tokenizer.json")
        except Exception as error:  # the tokenizers library raises bare Exception on a bad file
            raise InputError(f"{directory / 'tokenizer.json'}: cannot load ({error})") from None
    from speechft.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(directory)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"{directory}: not a fast (tokenizer.json) tokenizer; Qwen3-0.6B ships one")
    return TokenCounter(backend, "transformers")
