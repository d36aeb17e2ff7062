"""Chinese text normalisation as the Fun-ASR scoring recipe does it.

The recipe (`tools/whisper_mix_normalize.py`, see docs UPSTREAM.md §5) canonicalises numbers
with a round trip: first every Arabic number is written out in Chinese words (dates, money,
phone numbers, fractions, percentages, counted quantities, long digit strings, plain numbers,
in that order), then Chinese number words are turned back into Arabic digits, symbols are spelt
out, and the text is spaced for scoring. The round trip is not the identity (`35.5` comes back as
`35 点 5`, `2023年` as `2023 年`), and scores computed against references normalised by the recipe
are only comparable if every one of its rules is kept, including the odd ones. The rules are
written out below with the reason for each quirk; tests/data/normalize holds a corpus whose
expected output was produced by the recipe itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import zhconv

# ----------------------------------------------------------------------------------------------
# Arabic numbers -> Chinese words
# ----------------------------------------------------------------------------------------------

_DIGIT_WORDS = "零一二三四五六七八九"
# Place units of the "mid" numbering system: 万 is 10^4, 亿 10^8, every larger unit 10^4 more.
_UNITS: list[tuple[int, str]] = [(1, "十"), (2, "百"), (3, "千"), (4, "万")] + [
    ((index + 2) * 4, character) for index, character in enumerate("亿兆京垓秭穰沟涧正载")
]
_UNITS_LARGEST_FIRST = _UNITS[::-1]

# A spelled number is a list of symbols: ("digit", value, word), ("unit", power, word) or the
# decimal point ("point", 0, "点").
_Symbol = tuple[str, int, str]
_POINT: _Symbol = ("point", 0, "点")


def _digit(value: int) -> _Symbol:
    return ("digit", value, _DIGIT_WORDS[value])


def _spell_integer(number: str) -> list[_Symbol]:
    """Digits and place units for an integer string; inner zero runs become one 零."""
    significant = number.lstrip("0")
    if not significant:
        return []
    if len(significant) == 1:
        if len(number) != len(significant):
            return [_digit(0), _digit(int(significant))]
        return [_digit(int(significant))]
    power, word = next(unit for unit in _UNITS_LARGEST_FIRST if unit[0] < len(significant))
    return [
        *_spell_integer(number[:-power]),
        ("unit", power, word),
        *_spell_integer(significant[-power:]),
    ]


@lru_cache(maxsize=1 << 14)
def cardinal_words(number: str) -> str:
    """`1205.5` -> 一千两百零五点五: a 2 before a unit other than 十 is read 两 (两千, not 二千)."""
    integer, _, decimals = number.partition(".")
    symbols = _spell_integer(integer) if len(integer) > 1 else [_digit(int(c)) for c in integer]
    if decimals:
        symbols += [_POINT, *(_digit(int(c)) for c in decimals)]
    for index, (kind, value, _word) in enumerate(symbols):
        if kind != "digit" or value != 2 or index + 1 >= len(symbols):
            continue
        following = symbols[index + 1]
        previous = symbols[index - 1] if index > 0 else None
        if following[0] == "unit" and following[1] != 1:
            if previous is None or (previous[0] == "unit" and previous[1] != 1):
                symbols[index] = ("digit", 2, "两")
    words = "".join(symbol[2] for symbol in symbols)
    if words.startswith("点"):
        return "零" + words  # an all-zero integer part (`00.5`) spells as nothing
    if len(words) >= 2 and words[0] == "一" and words[1] == "十":
        words = words[1:]  # 10-19 are read 十, 十一 ... not 一十
    return words


@lru_cache(maxsize=1 << 14)
def digit_words(digits: str) -> str:
    """`2023` -> 二零二三: one word per digit, as years, phone numbers and codes are read."""
    return "".join([_DIGIT_WORDS[int(character)] for character in digits])


def _date_words(date: str) -> str:
    # `date` is [YYYY年][M月[D日|号]]: the year is read digit by digit, month and day as numbers.
    year_text, year_mark, rest = date.partition("年")
    if year_mark:
        year = digit_words(year_text) + "年"
    else:
        year, rest = "", date
    if not rest:
        return year
    month_text, _, day_text = rest.partition("月")
    month = cardinal_words(month_text) + "月"
    day = cardinal_words(day_text[:-1]) + day_text[-1] if day_text else ""
    return year + month + day


_DECIMAL_NUMBER = re.compile(r"(\d+(\.\d+)?)")


def _money_words(money: str) -> str:
    # Every occurrence of each number is replaced, one number after the other, as the recipe does.
    for match in _DECIMAL_NUMBER.finditer(money):
        number = match.group(1)
        money = money.replace(number, cardinal_words(number))
    return money


def _mobile_words(phone: str) -> str:
    return "".join(digit_words(part) for part in phone.strip("+").split())


def _landline_words(phone: str) -> str:
    return "".join(digit_words(part) for part in phone.split("-"))


def _fraction_words(fraction: str) -> str:
    numerator, denominator = fraction.split("/")
    return cardinal_words(denominator) + "分之" + cardinal_words(numerator)


def _percentage_words(percentage: str) -> str:
    return "百分之" + cardinal_words(percentage.strip().strip("%"))


_CURRENCY_UNITS = "((亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|)元|(亿|千万|百万|万|千|百|)块|角|毛|分)"
_CURRENCY_CHARACTERS = frozenset("亿千百万元块角毛分")
# Measure words after which a number is a count (read 两, 十 ... rather than digit by digit).
_QUANTIFIERS = (
    "(?:千克|微克|千米|微米|["
    "匹张座回场尾条个首阙阵网炮顶丘棵只支袭辆挑担颗壳窠曲墙群腔砣客贯扎捆刀令打手罗坡山岭江溪钟队单双对"
    "出口头脚板跳枝件贴针线管名位身堂课本页家户层丝毫厘分钱两斤铢石钧锱忽寸尺丈里寻常铺程撮勺合升斗盘碗"
    "碟叠桶笼盆盒杯斛锅簋篮罐瓶壶卮盏箩箱煲啖袋钵年月日季刻时周天秒旬纪岁世更夜春夏秋冬代伏辈丸泡粒幢堆"
    "根道面片块])"
)

# (pattern whose first group is the number text, how to write it in words, a test the text must
# pass for the pattern to match anything), applied in order. The tests are there for speed: the
# patterns that start with `\D+` retry at every character of a long run of non-digits.
# Each rule finds all its matches first and then replaces the first occurrence of each matched
# text in turn; that occurrence can lie inside a longer number (`a15 和 5个` -> `a1五 和 5个`), and
# the recipe's output depends on it, so the same two-step replacement is kept.
_ELEVEN_DIGITS = re.compile(r"\d{11}")
_SEVEN_DIGITS = re.compile(r"\d{7}")


def _always(text: str) -> bool:
    return True


_NUMBER_RULES: list[tuple[re.Pattern[str], Callable[[str], str], Callable[[str], bool]]] = [
    (
        re.compile(r"\D+((([089]\d|(19|20)\d{2})年)?(\d{1,2}月(\d{1,2}[日号])?)?)"),
        _date_words,
        lambda text: "年" in text or "月" in text,  # otherwise every match is empty
    ),
    (
        re.compile(r"\D+((\d+(\.\d+)?)[多余几]?" + _CURRENCY_UNITS + r"(\d" + _CURRENCY_UNITS + r"?)?)"),
        _money_words,
        lambda text: not _CURRENCY_CHARACTERS.isdisjoint(text),
    ),
    (
        re.compile(r"\D((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})\D"),
        _mobile_words,
        lambda text: _ELEVEN_DIGITS.search(text) is not None,
    ),
    (
        re.compile(r"\D((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})\D"),
        _landline_words,
        lambda text: _SEVEN_DIGITS.search(text) is not None,
    ),
    (re.compile(r"(\d+/\d+)"), _fraction_words, lambda text: "/" in text),
    (re.compile(r"(\d+(\.\d+)?%)"), _percentage_words, lambda text: "%" in text),
    (re.compile(r"(\d+(\.\d+)?)[多余几]?" + _QUANTIFIERS), cardinal_words, _always),
    (re.compile(r"(\d{4,32})"), digit_words, _always),
    (_DECIMAL_NUMBER, cardinal_words, _always),
]
_PERCENTAGE_RULE = 5
_ANY_DIGIT = re.compile(r"\d")
_LETTERS_TWO_LETTERS = re.compile(r"(([a-zA-Z]+)二([a-zA-Z]+))")


def numbers_to_words(text: str) -> str:
    """Write every Arabic number in `text` out in Chinese words (the recipe's first half)."""
    # The anchors give the rules that need a non-digit before or after a number one at the ends.
    text = "^" + text + "$"
    if _ANY_DIGIT.search(text):
        for index, (pattern, to_words, may_match) in enumerate(_NUMBER_RULES):
            if index == _PERCENTAGE_RULE:
                text = text.replace("％", "%")
            if not may_match(text):
                continue
            for found in [match.group(1) for match in pattern.finditer(text)]:
                if found:
                    text = text.replace(found, to_words(found), 1)
    else:
        text = text.replace("％", "%")
    if "二" in text:
        # Undo the rewrite of names such as P2P or B2B, whose 2 became 二 above.
        for match in _LETTERS_TWO_LETTERS.finditer(text):
            text = text.replace(match.group(1), match.group(2) + "2" + match.group(3), 1)
    return text.lstrip("^").rstrip("$")


# ----------------------------------------------------------------------------------------------
# Chinese words -> Arabic digits, symbols, spacing
# ----------------------------------------------------------------------------------------------

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


def words_to_digits(text: str) -> str:
    """Turn Chinese number words (up to 千万) into Arabic digits: 两千三百五十 -> 2350.

    A character-level state machine, kept rule for rule from the recipe: `state` 0 is outside a
    number, 1 after a digit word, 2 after a leading 十, 3 after a place; a negative state ends the
    number (-2 also keeps the character that ended it).
    """
    if _NUMBER_CHARACTERS.isdisjoint(text):
        return text
    pieces: list[str] = []
    digits: list[str] = []
    places: list[str] = []
    zero_inside = False
    state = 0
    last = len(text) - 1
    for index, character in enumerate(text):
        if character == " ":
            pieces.append(" ")
            continue
        if character in _DIGIT_VALUES:
            state = 1
            if character == "两" and (
                index == last or (text[index + 1] not in _DIGIT_VALUES and text[index + 1] not in _PLACE_RANKS)
            ):
                state = -1  # 两 not followed by a number word is "two of", "ounce", not a digit
            if state == 1:
                digits.append(_DIGIT_VALUES[character])
        elif character == "十" and state == 0:
            state = 2
            digits.append("1")
            places.append(character)
        elif character == "十" and state == 3:
            digits.append("1")
            places.append(character)
        elif character == "零" and state in (0, 1):
            digits.append("0")
        elif character == "零" and state == 3:
            zero_inside = True
        elif state == 1 and character in _PLACE_RANKS:
            state = 3
            if character == "千" and index < last and text[index + 1] in _LENGTH_UNITS:
                state = -1
            if state == 3:
                places.append(character)
        elif state == 3 and character in _PLACE_RANKS:
            combined = places[-1] + character
            if combined in _PLACE_RANKS:
                places[-1] = combined
            else:
                state = -2
        else:
            state = -1
        if digits and state == -1:
            state = -2
        if index == last and state >= 0:
            state = -1
        if state < 0:
            if digits:
                pieces.append(_compose(digits, places, zero_inside))
                digits, places, zero_inside = [], [], False
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
