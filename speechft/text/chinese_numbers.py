"""Arabic numbers written out in Chinese words: the first half of the Fun-ASR scoring recipe's round trip.

Dates, money, phone numbers, fractions, percentages, counted quantities, long digit strings and
plain numbers are rewritten in that order, each by the recipe's rule (see
:mod:`speechft.text.chinese` for why every quirk is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

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
        before_big_unit = following[0] == "unit" and following[1] != 1
        if before_big_unit and (previous is None or (previous[0] == "unit" and previous[1] != 1)):
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
