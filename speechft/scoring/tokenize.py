"""Turning a transcript into scoring tokens, the way the guide's `compute-wer` does.

Rules (applied after removing tags such as ``<|zh|>`` or ``<|Speech|>``):

- Chinese, Japanese kana, Thai, Lao, Myanmar, Khmer and Tibetan characters are one token each.
- A run of letters and digits is one word; an apostrophe inside or after a word belongs to it
  (``it's``), anywhere else it is a token of its own.
- Every other punctuation mark or symbol is a token of its own (normalise first to drop them).
- Whitespace, control, format and combining characters separate tokens and are dropped.
- Tokens are upper-cased, so scoring is case-insensitive (``compute-wer`` shows them upper-cased).

With ``by_character`` every letter and digit is a token too, so every script is scored per
character. One deliberate difference from ``compute-wer``: CJK ideographs outside the basic block
(Extension A and beyond, compatibility ideographs) are one token each, as their basic-block
neighbours are, instead of being glued together into a "word".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import cache

# `<|zh|>`, `<|Speech|>`, `<|withitn|>`: markers some decoders leave in their output.
TAG_PATTERN = re.compile(r"<\|[^|<>]*\|>")

# Lines made only of these characters (whitespace aside) are tokenised by a regex; anything else takes the
# per-character path. The ideograph range stops at U+9FFC because U+9FFD..U+9FFF are unassigned
# in older Unicode tables and unassigned characters are dropped.
_FAST_LINE = re.compile("[\x21-\x7e\u4e00-\u9ffc\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f]*")
_IDEOGRAPHS = re.compile("[\u4e00-\u9ffc]*")
_IDEOGRAPH_LINES = re.compile("[\u4e00-\u9ffc \n]*")
_FAST_WORDS = re.compile("[A-Za-z0-9][A-Za-z0-9']*|[^ A-Za-z0-9]")

_CHARACTER_SCRIPTS = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x0F00, 0x0FFF),  # Tibetan
    (0x20000, 0x323AF),  # CJK extensions B..H
)

TokenSequence = Sequence[str]
"""A list of tokens, or a ``str`` whose every character is one token."""

CLASSES = ("Chinese", "English", "Japanese", "Number", "Other")
"""Token classes in the order reports list them."""

# A token's class comes from the Unicode names of its characters; these characters do not
# decide it (so "DON'T" is English and "3.5" a Number), as in compute-wer.
_NEUTRAL_NAME_PREFIXES = (
    "AMPERSAND",
    "APOSTROPHE",
    "COMMERCIAL AT",
    "DEGREE CELSIUS",
    "EQUALS SIGN",
    "FULL STOP",
    "HYPHEN-MINUS",
    "LOW LINE",
    "NUMBER SIGN",
    "PLUS SIGN",
    "SEMICOLON",
)
_CLASS_BY_NAME_PREFIX = (
    ("DIGIT", "Number"),
    ("CJK UNIFIED IDEOGRAPH", "Chinese"),
    ("CJK COMPATIBILITY IDEOGRAPH", "Chinese"),
    ("LATIN CAPITAL LETTER", "English"),
    ("LATIN SMALL LETTER", "English"),
    ("HIRAGANA LETTER", "Japanese"),
    ("KATAKANA LETTER", "Japanese"),
)


def is_character_script(char: str) -> bool:
    """Whether `char` belongs to a script written without spaces (one token per character)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CHARACTER_SCRIPTS)


def tokenize(text: str, *, by_character: bool = False) -> TokenSequence:
    """Split a transcript into upper-cased scoring tokens (see the module docstring).

    Returns a ``str`` when every token is a single character (a line of Chinese, or ``--char``
    on plain text), each character being one token, else a list of tokens. Both index, slice
    and compare the same way; the string form lets the aligner compare code points directly.
    """
    if "<|" in text:
        text = TAG_PATTERN.sub(" ", text)
    # Whitespace of every kind only separates tokens, so it can go first.
    compact = "".join(text.split())
    if _IDEOGRAPHS.fullmatch(compact):
        return compact
    if _FAST_LINE.fullmatch(compact):
        if by_character:
            return compact.upper()
        return _FAST_WORDS.findall(" ".join(text.split()).upper())
    return [token.upper() for token in _tokenize_slow(text, by_character)]


def tokenize_many(texts: Sequence[str], *, by_character: bool = False) -> list[TokenSequence]:
    """:func:`tokenize` for many transcripts, with one check for the common all-Chinese case."""
    if _IDEOGRAPH_LINES.fullmatch("\n".join(texts)):
        return [text.replace(" ", "") for text in texts]
    return [tokenize(text, by_character=by_character) for text in texts]


def is_ideographs(sequence: TokenSequence) -> bool:
    """Whether `sequence` is a string of basic-block CJK ideographs only (all class Chinese)."""
    return isinstance(sequence, str) and _IDEOGRAPHS.fullmatch(sequence) is not None


def _tokenize_slow(text: str, by_character: bool) -> list[str]:
    """The per-character tokenizer for text outside the fast path's alphabet."""
    category = unicodedata.category
    tokens: list[str] = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        kind = category(char)
        if kind == "Cn":  # unassigned in this Python's Unicode tables
            position += 1
        elif kind[0] in "PS" or is_character_script(char):
            tokens.append(char)
            position += 1
        elif kind[0] in "LN":
            end = position + 1
            if not by_character:
                while end < length:
                    following = text[end]
                    if is_character_script(following):
                        break
                    if following != "'" and category(following)[0] not in "LN":
                        break
                    end += 1
            tokens.append(text[position:end])
            position = end
        else:  # separators, controls, combining marks, unassigned: dropped
            position += 1
    return tokens


@cache
def token_class(token: str) -> str:
    """The class a token counts under: Chinese, English, Japanese, Number or Other.

    Each character is classed by its Unicode name; characters such as ``'``, ``.``, ``-``, ``_``
    do not count; a token whose counting characters all share one class gets it, any other
    token (mixed, or made only of neutral characters) is Other.
    """
    found: set[str] = set()
    for char in token:
        name = unicodedata.name(char, "")
        if name.startswith(_NEUTRAL_NAME_PREFIXES):
            continue
        found.add(next((label for prefix, label in _CLASS_BY_NAME_PREFIX if name.startswith(prefix)), "Other"))
    return found.pop() if len(found) == 1 else "Other"


@cache
def display_width(token: str) -> int:
    """Terminal columns a token takes: 2 for wide and ambiguous-width (East Asian) characters."""
    return sum(2 if unicodedata.east_asian_width(char) in ("A", "F", "W") else 1 for char in token)
