"""Scoring tokens: one per CJK/kana/Thai character, words of letters and digits, no case, no tags."""

from __future__ import annotations

import pytest

from speechft.scoring.tokenize import display_width, token_class, tokenize, tokenize_many


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天 天气很好", list("今天天气很好")),
        ("hello World", ["HELLO", "WORLD"]),
        ("it's 3 dogs", ["IT'S", "3", "DOGS"]),
        ("abc中文def", ["ABC", "中", "文", "DEF"]),
        ("gpt4o mini", ["GPT4O", "MINI"]),
        ("'quoted'", ["'", "QUOTED'"]),  # a leading apostrophe is a token; a trailing one belongs to the word
        ("a,b.", ["A", ",", "B", "."]),  # punctuation is kept as tokens, as compute-wer does
        ("你好，世界。", ["你", "好", "，", "世", "界", "。"]),
        ("ありがとう", list("ありがとう")),
        ("สวัสดี", list("สวัสดี")),  # Thai: one token per character, combining marks included
        ("Straße café", ["STRASSE", "CAFÉ"]),
        ("  \t \u3000 ", []),
        ("", []),
        ("<|zh|><|NEUTRAL|><|Speech|><|withitn|>你好", ["你", "好"]),
        ("hello<|en|>world", ["HELLO", "WORLD"]),
        ("a < b", ["A", "<", "B"]),  # a lone `<` is not a tag
        ("\u3400\u3401", ["\u3400", "\u3401"]),  # CJK extension A: one token per character
    ],
)
def test_tokenize(text, expected):
    assert list(tokenize(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello 3", list("HELLO3")),
        ("it's", ["I", "T", "'", "S"]),
        ("今天 ok", ["今", "天", "O", "K"]),
        ("café", list("CAFÉ")),
        ("<|zh|>ab", ["A", "B"]),
    ],
)
def test_tokenize_by_character(text, expected):
    assert list(tokenize(text, by_character=True)) == expected


def test_tokenize_many_matches_tokenize():
    chinese = ["今天 天气", "", "很 好"]
    mixed = ["今天 ok", "hello", "<|zh|>你好"]
    for texts in (chinese, mixed):
        assert [list(tokens) for tokens in tokenize_many(texts)] == [list(tokenize(text)) for text in texts]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("中", "Chinese"),
        ("HELLO", "English"),
        ("DON'T", "English"),
        ("2024", "Number"),
        ("3.5", "Number"),
        ("あ", "Japanese"),
        ("ア", "Japanese"),
        ("GPT4", "Other"),  # letters and digits mixed
        ("２", "Other"),  # fullwidth digits are not DIGIT characters
        (",", "Other"),
        ("'", "Other"),
    ],
)
def test_token_class(token, expected):
    assert token_class(token) == expected


@pytest.mark.parametrize(("token", "width"), [("中", 2), ("A", 1), ("HELLO", 5), ("２０", 4), ("É", 1)])
def test_display_width(token, width):
    assert display_width(token) == width
