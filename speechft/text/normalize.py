"""Transcript normalisation for scoring, identical to Fun-ASR's `tools/whisper_mix_normalize.py`.

The fine-tuning guide scores a model by normalising references and hypotheses with that script
and running `compute-wer` on the results, so `speechft normalize` must write the same bytes for
the same input (docs UPSTREAM.md §5). Per line:

1. `=`, `(` and `)` become spaces; the text is split on whitespace.
2. Each token is classed as English (Latin letters, digits and a few punctuation marks, but not
   digits and punctuation alone), Chinese+English (the same plus CJK ideographs) or other.
3. Consecutive tokens of one class form a group, normalised as a whole:
   - English: Whisper's English normaliser, then spacing for scoring;
   - Chinese+English: Whisper's English normaliser, numbers written out in Chinese words and
     read back as Arabic digits, symbols spelt out, spacing, traditional -> simplified;
   - other: Whisper's basic normaliser, then the same Chinese chain.
4. The groups are joined by spaces. The output is `key<TAB>text`; a key without text keeps an
   empty text.

Differences from the script, all in how files are read: invalid UTF-8 is an error naming the
line (the script stops with a traceback), and a byte-order mark before the first key is dropped
(the script makes it part of the key). The script's optional Japanese kana conversion is not
provided.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from speechft.io.textfile import STDIO, iter_lines, open_output, split_key
from speechft.text import chinese, chinese_numbers, whisper

_ENGLISH_TOKEN = re.compile(r"[A-Za-z0-9,.!?:;，。！？：；、%'\s\-~]+")
_CHINESE_ENGLISH_TOKEN = re.compile(r"[\u4e00-\u9fa5A-Za-z0-9,.!?:;，。！？：；、%'\s\-~]+")
_NUMBER_TOKEN = re.compile(r"[0-9,.!?:;，。！？：；、%'\s]+")
_BRACKETS_TO_SPACES = str.maketrans("=()", "   ")

_ENGLISH, _CHINESE_ENGLISH, _OTHER = 0, 1, 2


def _token_class(token: str) -> int:
    if _ENGLISH_TOKEN.fullmatch(token) and not _NUMBER_TOKEN.fullmatch(token):
        return _ENGLISH
    if _CHINESE_ENGLISH_TOKEN.fullmatch(token):
        return _CHINESE_ENGLISH
    return _OTHER


# Transcripts repeat short groups ("ok", "是的", numbers) often enough for a cache to pay.
@lru_cache(maxsize=1 << 17)
def _normalize_group(token_class: int, group: str) -> str:
    if token_class == _ENGLISH:
        return chinese.score_spacing(whisper.english(group))
    spelled = whisper.english(group) if token_class == _CHINESE_ENGLISH else whisper.basic(group)
    return chinese.to_simplified(chinese.words_to_canonical(chinese_numbers.numbers_to_words(spelled)))


def normalize_text(text: str) -> str:
    """Normalise one transcript (the text after the key) for scoring.

    >>> normalize_text("今天是2023年5月1日，花了35.5元")
    '今 天 是 2 0 2 3 年 5 月 1 日 花 了 3 5 点 5 元'
    >>> normalize_text("I don't have $20")
    'i do not have 2 0'
    """
    tokens = text.translate(_BRACKETS_TO_SPACES).split()
    if not tokens:
        return ""
    outputs: list[str] = []
    group: list[str] = []
    group_class = _token_class(tokens[0])
    for token in tokens:
        token_class = _token_class(token)
        if token_class != group_class:
            outputs.append(_normalize_group(group_class, " ".join(group)))
            group = []
            group_class = token_class
        group.append(token)
    outputs.append(_normalize_group(group_class, " ".join(group)))
    # Group outputs can start or end with a space; like the script, only the ends are trimmed.
    return " ".join(outputs).strip()


def normalize_file(
    source: str | Path,
    target: str | Path,
    *,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
) -> int:
    """Normalise a `key text` file into `key<TAB>text` lines; `-` is stdin or stdout.

    Blank lines are skipped, as the script does. `on_progress(lines_read)` is called every
    `progress_every` lines and once at the end. Returns the number of lines written. Raises
    InputError for a missing or unreadable input, invalid UTF-8 (naming the line) or an
    unwritable output.
    """
    written = 0
    lines_read = 0
    with open_output(target) as output:
        for lines_read, line in iter_lines(source):
            if lines_read == 1 and line.startswith("\ufeff"):
                line = line[1:]
            # The script reads in text mode, where a lone carriage return also ends a line.
            for part in line.split("\r") if "\r" in line else (line,):
                key, text = split_key(part)
                if key:
                    output.write(f"{key}\t{normalize_text(text)}\n")
                    written += 1
            if on_progress is not None and lines_read % progress_every == 0:
                on_progress(lines_read)
    if on_progress is not None:
        on_progress(lines_read)
    return written


def count_lines(path: str | Path) -> int:
    """Number of lines in a file (for a progress total); 0 for stdin."""
    if str(path) == STDIO:
        return 0
    count = 0
    last = b"\n"
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return 0  # normalize_file reports the problem with the file
    return count + (last != b"\n")
