"""speechft.console.progress: the one progress display, on stderr, with the columns a command asks for."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

from speechft import console


def _texts(progress) -> list[str]:  # noqa: ANN001
    return [column.text_format for column in progress.columns if isinstance(column, TextColumn)]


def test_columns_follow_the_request() -> None:
    bar = console.progress("decode", "{task.fields[rtf]:.3f}")
    assert _texts(bar) == ["decode", "{task.fields[rtf]:.3f}"]
    assert [type(c) for c in bar.columns if isinstance(c, (TimeElapsedColumn, TimeRemainingColumn))] == [TimeRemainingColumn]
    assert bar.console is console.err and not bar.disable

    both = console.progress("epoch {task.fields[epoch]}", elapsed=True, keep=True, enabled=False)
    assert _texts(both) == ["epoch {task.fields[epoch]}", "ETA"]
    assert both.disable

    no_thread = console.progress("{task.description}", elapsed=True, remaining=False, refresh_thread=False)
    assert no_thread.live.auto_refresh is False
    assert "ETA" not in _texts(no_thread)


def test_renders_done_of_total_and_details() -> None:
    bar = console.progress("normalizing", "{task.fields[audio]:.0f} s audio", keep=True)
    stream = io.StringIO()
    bar.live.console = Console(file=stream, width=100, force_terminal=False)
    with bar:
        task = bar.add_task("normalizing", total=4, audio=0.0)
        bar.update(task, completed=3, audio=12.4)
    assert "normalizing" in stream.getvalue() and "3/4" in stream.getvalue() and "12 s audio" in stream.getvalue()
