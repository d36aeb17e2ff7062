"""Normalise transcripts for scoring, exactly as Fun-ASR's tools/whisper_mix_normalize.py does.

Reads `key text` lines from IN and writes `key<TAB>normalised text` lines to OUT in input order (`-` reads stdin / writes stdout). Chinese characters come out space-separated and simplified, numbers as Arabic digits one per token, punctuation removed, English through the Whisper English normaliser. A key without text keeps an empty text; blank lines are skipped. Normalise both the references and the decode output before `speechft score`.

The upstream script's Japanese kana conversion (its optional third argument) is not available.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from speechft import console
from speechft.cli.common import guarded
from speechft.io.textfile import STDIO

# Below this size a file is done in a couple of seconds and a progress bar is only noise,
# unless someone is watching the terminal.
_LARGE_FILE_BYTES = 32 << 20


@guarded
def command(
    source: Annotated[str, typer.Argument(metavar="IN", help="`key text` file to normalise; `-` for stdin.")],
    target: Annotated[str, typer.Argument(metavar="OUT", help="Output `key<TAB>text` file; `-` for stdout.")],
) -> None:
    from speechft.text.normalize import count_lines, normalize_file

    if source == STDIO or not _wants_progress(source):
        written = normalize_file(source, target)
    else:
        with console.progress("normalizing") as progress:
            task = progress.add_task("normalize", total=count_lines(source) or None)
            written = normalize_file(source, target, on_progress=lambda done: progress.update(task, completed=done))
    if target != STDIO:
        console.err.print(f"normalized {written} lines -> {target}", markup=False, highlight=False)


def _wants_progress(source: str) -> bool:
    try:
        size = os.stat(source).st_size
    except OSError:
        return False  # normalize_file reports the missing or unreadable file
    return console.err.is_terminal or size >= _LARGE_FILE_BYTES
