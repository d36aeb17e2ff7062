"""The Whisper English and basic text normalisers, as the PyPI `whisper-normalizer` defines them.

The Fun-ASR scoring recipe runs every transcript through these two normalisers. Their reference
implementation re-resolves about sixty regular expressions and walks the text character by
character in Python on every call; normalising a large decode output spends most of its time
there. The functions below give the same output for every input (the parity corpus in
tests/data/normalize checks that) while doing less work:

- patterns are compiled once, and a pattern runs only when the literal text it needs is present;
- the per-character symbol and diacritic removal is a `str.translate` over a table filled the
  first time each character is seen;
- the number normaliser (a word-by-word state machine) runs only when the text has a digit, a
  number word or "half" in it: without those it returns the words unchanged.

The library's own number normaliser and British-to-American spelling table are used as they are.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from whisper_normalizer.basic import ADDITIONAL_DIACRITICS
from whisper_normalizer.english import EnglishNumberNormalizer, EnglishSpellingNormalizer

_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENTHESISED = re.compile(r"\(([^)]+?)\)")
_FILLERS = re.compile(r"\b(hmm|mm|mhm|mmm|uh|um)\b")
_SPACE_BEFORE_APOSTROPHE = re.compile(r"\s+'")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d),(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.([^0-9]|$)")
_LONE_PREFIX_SYMBOL = re.compile(r"[.$¢€£]([^0-9])")
_LONE_PERCENT = re.compile(r"([^0-9])%")
_WHITESPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")

# (text that must occur for the pattern to match, pattern, replacement), applied in this order:
# the order matters because an early replacement can remove what a later pattern would match.
_CONTRACTIONS: list[tuple[str, re.Pattern[str], str]] = [
    (literal, re.compile(pattern), replacement)
    for literal, pattern, replacement in [
        ("won't", r"\bwon't\b", "will not"),
        ("can't", r"\bcan't\b", "can not"),
        ("let's", r"\blet's\b", "let us"),
        ("ain't", r"\bain't\b", "aint"),
        ("y'all", r"\by'all\b", "you all"),
        ("wanna", r"\bwanna\b", "want to"),
        ("kinda", r"\bkinda\b", "kind of"),
        ("sorta", r"\bsorta\b", "sort of"),
        ("dunno", r"\bdunno\b", "do not know"),
        ("gotta", r"\bgotta\b", "got to"),
        ("gonna", r"\bgonna\b", "going to"),
        ("i'ma", r"\bi'ma\b", "i am going to"),
        ("imma", r"\bimma\b", "i am going to"),
        ("woulda", r"\bwoulda\b", "would have"),
        ("coulda", r"\bcoulda\b", "could have"),
        ("shoulda", r"\bshoulda\b", "should have"),
        ("cause", r"\bcause\b", "because"),
        ("ma'am", r"\bma'am\b", "madam"),
        ("mr", r"\bmr\b", "mister "),
        ("mrs", r"\bmrs\b", "missus "),
        ("st", r"\bst\b", "saint "),
        ("dr", r"\bdr\b", "doctor "),
        ("prof", r"\bprof\b", "professor "),
        ("capt", r"\bcapt\b", "captain "),
        ("gov", r"\bgov\b", "governor "),
        ("ald", r"\bald\b", "alderman "),
        ("gen", r"\bgen\b", "general "),
        ("sen", r"\bsen\b", "senator "),
        ("rep", r"\brep\b", "representative "),
        ("pres", r"\bpres\b", "president "),
        ("rev", r"\brev\b", "reverend "),
        ("hon", r"\bhon\b", "honorable "),
        ("asst", r"\basst\b", "assistant "),
        ("assoc", r"\bassoc\b", "associate "),
        ("lt", r"\blt\b", "lieutenant "),
        ("col", r"\bcol\b", "colonel "),
        ("jr", r"\bjr\b", "junior "),
        ("sr", r"\bsr\b", "senior "),
        ("esq", r"\besq\b", "esquire "),
        ("'d been", r"'d been\b", " had been"),
        ("'s been", r"'s been\b", " has been"),
        ("'d gone", r"'d gone\b", " had gone"),
        ("'s gone", r"'s gone\b", " has gone"),
        ("'d done", r"'d done\b", " had done"),
        ("'s got", r"'s got\b", " has got"),
        ("n't", r"n't\b", " not"),
        ("'re", r"'re\b", " are"),
        ("'s", r"'s\b", " is"),
        ("'d", r"'d\b", " would"),
        ("'ll", r"'ll\b", " will"),
        ("'t", r"'t\b", " not"),
        ("'ve", r"'ve\b", " have"),
        ("'m", r"'m\b", " am"),
    ]
]

_KEPT_BY_ENGLISH = ".%$¢€£"  # numeric symbols the number normaliser still needs to see


class _CharacterTable(dict):  # type: ignore[type-arg]
    """A `str.translate` table that computes each character's replacement the first time."""

    def __init__(self, keep: str, drop_nonspacing_marks: bool) -> None:
        super().__init__()
        self._keep = keep
        self._drop_nonspacing_marks = drop_nonspacing_marks

    def __missing__(self, code_point: int) -> str:
        character = chr(code_point)
        if character in self._keep:
            replacement = character
        elif self._drop_nonspacing_marks and character in ADDITIONAL_DIACRITICS:
            replacement = ADDITIONAL_DIACRITICS[character]
        else:
            category = unicodedata.category(character)
            if self._drop_nonspacing_marks and category == "Mn":
                replacement = ""
            elif category[0] in "MSP":
                replacement = " "
            else:
                replacement = character
        self[code_point] = replacement
        return replacement


_ENGLISH_SYMBOLS = _CharacterTable(keep=_KEPT_BY_ENGLISH, drop_nonspacing_marks=True)
_BASIC_SYMBOLS = _CharacterTable(keep="", drop_nonspacing_marks=False)

_numbers = EnglishNumberNormalizer()
_spellings: dict[str, str] = EnglishSpellingNormalizer().mapping
_NUMBER_WORDS = frozenset(_numbers.words)


def _remove_brackets(text: str) -> str:
    if "<" in text or "[" in text:
        text = _BRACKETED.sub("", text)
    if "(" in text:
        text = _PARENTHESISED.sub("", text)
    return text


@lru_cache(maxsize=1 << 16)
def _standardize_numbers(text: str) -> str:
    return _numbers(text)


def english(text: str) -> str:
    """Whisper's `EnglishTextNormalizer()(text)`."""
    text = _remove_brackets(text.lower())
    if "mm" in text or "mhm" in text or "uh" in text or "um" in text:
        text = _FILLERS.sub("", text)
    if "'" in text:
        text = _SPACE_BEFORE_APOSTROPHE.sub("'", text)
    for literal, pattern, replacement in _CONTRACTIONS:
        if literal in text:
            text = pattern.sub(replacement, text)
    if "," in text:
        text = _COMMA_BETWEEN_DIGITS.sub(r"\1\2", text)
    if "." in text:
        text = _PERIOD_NOT_BEFORE_DIGIT.sub(r" \1", text)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    text = text.translate(_ENGLISH_SYMBOLS)

    words = text.split()
    if _DIGIT.search(text) or "half" in text or not _NUMBER_WORDS.isdisjoint(words):
        words = _standardize_numbers(text).split()
    text = " ".join([_spellings.get(word, word) for word in words])

    if "." in text or "$" in text or "¢" in text or "€" in text or "£" in text:
        text = _LONE_PREFIX_SYMBOL.sub(r" \1", text)
    if "%" in text:
        text = _LONE_PERCENT.sub(r"\1 ", text)
    return _WHITESPACE.sub(" ", text)


def basic(text: str) -> str:
    """Whisper's `BasicTextNormalizer()(text)` (no diacritic removal, no letter splitting)."""
    text = _remove_brackets(text.lower())
    text = unicodedata.normalize("NFKC", text).translate(_BASIC_SYMBOLS).lower()
    return _WHITESPACE.sub(" ", text)
