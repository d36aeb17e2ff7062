"""Chinese text normalisation as the Fun-ASR scoring recipe does it: the second half, and simplification.

The recipe (`tools/whisper_mix_normalize.py`, see docs UPSTREAM.md §5) canonicalises numbers
with a round trip: first every Arabic number is written out in Chinese words
(:mod:`speechft.text.chinese_numbers`), then, here, Chinese number words are turned back into
Arabic digits, symbols are spelt out, and the text is spaced for scoring. The round trip is not
the identity (`35.5` comes back as `35 点 5`, `2023年` as `2023 年`), and scores computed against
references normalised by the recipe are only comparable if every one of its rules is kept,
including the odd ones. The rules are written out below with the reason for each quirk;
tests/data/normalize holds a corpus whose expected output was produced by the recipe itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import zhconv

_ANY_DIGIT = re.compile(r"\d")

_MULTIPLE_SPACES = re.compile(r" +")
_CJK_OR_DIGITS = re.compile(r"[\u4e00-\u9fa50-9]*")


def _is_latin(character: str) -> bool:
    """Latin, Latin-1, Latin Extended-A and Cyrillic: the recipe's "English" characters."""
    return character <= "\u017f" or "\u0400" <= character <= "\u04ff"


def space_words(text: str) -> str:
    """Separate runs of Latin letters from Chinese characters and digits by one space.

    A quirk kept from the recipe: spaces before the first Latin letter are dropped, an apostrophe
    that starts a Latin run is dropped, and other characters always get a space before them.
    """
    if _CJK_OR_DIGITS.fullmatch(text):
        return text
    pieces: list[str] = []
    after_latin = False
    for character in text:
        if character == " ":
            if after_latin:
                pieces.append(" ")
            continue
        if "\u4e00" <= character <= "\u9fa5" or "0" <= character <= "9":
            pieces.append(" " + character if after_latin else character)
            after_latin = False
        elif _is_latin(character):
            if after_latin:
                pieces.append(character)
            else:
                pieces.append(" " if character == "'" else " " + character)
            after_latin = True
        else:
            pieces.append(" " + character)
    return _MULTIPLE_SPACES.sub(" ", "".join(pieces))


class _DigitToWordTable(dict):  # type: ignore[type-arg]
    """`str.translate` table mapping each decimal digit to a word, with the recipe's off-by-one.

    The recipe's table lists 两 between 二 and 三, so 3 becomes 两, 4 becomes 三 and so on. By this
    step every digit has already been written in words, except a 2 restored in names such as
    P2P (which maps correctly to 二), so the shift is kept for identical output.
    """

    WORDS = "零一二两三四五六七八九"

    def __missing__(self, code_point: int) -> str:
        character = chr(code_point)
        replacement = self.WORDS[int(character)] if _ANY_DIGIT.match(character) else character
        self[code_point] = replacement
        return replacement


_DIGITS_TO_WORDS = _DigitToWordTable()

_DIGIT_VALUES = {"一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9", "两": "2", "幺": "1"}
# Rank of each place: the number of digits a value has when the place is its highest.
_PLACE_RANKS = {"零": 1, "十": 2, "百": 3, "千": 4, "万": 5, "十万": 6, "百万": 7, "千万": 8}
_LENGTH_UNITS = {"里", "克", "米"}  # 千 before these is a prefix (千米), not a thousand
_NUMBER_CHARACTERS = frozenset(_DIGIT_VALUES) | {"十", "零"}


def _compose(digits: list[str], places: list[str], zero_inside: bool) -> str:
    """Arabic digits for one Chinese number read as digits and their places."""
    if len(places) == 1 and not zero_inside and places[0] == "百" and len(places) != len(digits):
        places.append("十")  # 一百五 is 150
    if len(digits) == len(places) + 1:
        places.append("零")
    if len(digits) != len(places):
        return "".join(digits)
    reversed_digits = ""
    for digit, place in zip(reversed(digits), reversed(places)):
        reversed_digits += "0" * (_PLACE_RANKS[place] - len(reversed_digits) - 1) + digit
    return reversed_digits[::-1]


@dataclass
class _Number:
    """The Chinese number being read: its digits and places so far."""

    digits: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    zero_inside: bool = False


def _advance(text: str, index: int, state: int, number: _Number) -> int:
    """Read `text[index]` into `number`; the new state (see :func:`words_to_digits`)."""
    character = text[index]
    last = len(text) - 1
    if character in _DIGIT_VALUES:
        if character == "两" and (index == last or (text[index + 1] not in _DIGIT_VALUES and text[index + 1] not in _PLACE_RANKS)):
            return -1  # 两 not followed by a number word is "two of", "ounce", not a digit
        number.digits.append(_DIGIT_VALUES[character])
        return 1
    if character == "十" and state in (0, 3):
        number.digits.append("1")
        number.places.append(character)
        return 2 if state == 0 else 3
    if character == "零" and state in (0, 1):
        number.digits.append("0")
        return state
    if character == "零" and state == 3:
        number.zero_inside = True
        return state
    if state == 1 and character in _PLACE_RANKS:
        if character == "千" and index < last and text[index + 1] in _LENGTH_UNITS:
            return -1
        number.places.append(character)
        return 3
    if state == 3 and character in _PLACE_RANKS:
        combined = number.places[-1] + character
        if combined not in _PLACE_RANKS:
            return -2
        number.places[-1] = combined
        return state
    return -1


def words_to_digits(text: str) -> str:
    """Turn Chinese number words (up to 千万) into Arabic digits: 两千三百五十 -> 2350.

    A character-level state machine, kept rule for rule from the recipe: `state` 0 is outside a
    number, 1 after a digit word, 2 after a leading 十, 3 after a place; a negative state ends the
    number (-2 also keeps the character that ended it).
    """
    if _NUMBER_CHARACTERS.isdisjoint(text):
        return text
    pieces: list[str] = []
    number = _Number()
    state = 0
    last = len(text) - 1
    for index, character in enumerate(text):
        if character == " ":
            pieces.append(" ")
            continue
        state = _advance(text, index, state, number)
        if number.digits and state == -1:
            state = -2
        if index == last and state >= 0:
            state = -1
        if state < 0:
            if number.digits:
                pieces.append(_compose(number.digits, number.places, number.zero_inside))
                number = _Number()
            else:
                pieces.append(character)
            if state == -2:
                pieces.append(character)
            state = 0
    return "".join(pieces)


_SYMBOL_WORDS = str.maketrans(
    {"÷": "除以", "×": "乘以", "=": "等于", "+": "加", "-": "负", "℃": "摄氏度", "㎡": "平方米", "‰": "%", "﹪": "%", ".": "点", "°": "度"}
)


def symbols_to_words(text: str) -> str:
    """Spell out math and unit symbols; a prime (′) after a degree sign is a minute of arc."""
    if "′" in text and "°" in text:
        head, degree, tail = text.partition("°")
        text = head + degree + tail.replace("′", "分")
    return text.translate(_SYMBOL_WORDS)


# A run of "English" characters (Latin, Cyrillic, ASCII but digits) or one other character.
_SCORE_PIECES = re.compile(r"[\x00-\x2f\x3a-\u017f\u0400-\u04ff]+|[^\x00-\x2f\x3a-\u017f\u0400-\u04ff]")


def score_spacing(text: str) -> str:
    """Space for scoring: every CJK character and digit its own token, Latin words kept whole."""
    return _MULTIPLE_SPACES.sub(" ", " ".join(_SCORE_PIECES.findall(text)))


def words_to_canonical(text: str) -> str:
    """The recipe's second half: number words to digits, symbols to words, spacing for scoring."""
    text = space_words(text)
    if _ANY_DIGIT.search(text):
        text = text.translate(_DIGITS_TO_WORDS)
    text = words_to_digits(text)
    text = symbols_to_words(text)
    return score_spacing(text)


@lru_cache(maxsize=1 << 16)
def _simplified_piece(piece: str) -> str:
    return zhconv.convert(piece, "zh-cn")


def to_simplified(text: str) -> str:
    """Traditional -> simplified (zhconv, zh-cn) for text already split into scoring tokens.

    zhconv matches the longest dictionary phrase at each position, and no phrase contains a
    space, so converting each space-separated piece gives the same result as the whole text.
    """
    return " ".join([_simplified_piece(piece) for piece in text.split(" ")])
