"""The two rich consoles every command shares (results to stdout, progress and messages to stderr), and
the one progress display every long-running command uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def progress(
    label: str,
    *details: str,
    elapsed: bool = False,
    remaining: bool = True,
    enabled: bool = True,
    keep: bool = False,
    refresh_thread: bool = True,
) -> Progress:
    """A progress bar on stderr: `label`, the bar, done/total, then `details`, then the times.

    `label` and `details` are rich format strings over the task (`{task.description}`,
    `{task.fields[rtf]:.3f}`). `keep` leaves the finished bar on screen instead of clearing it.
    `refresh_thread=False` draws only on `refresh()`: a caller that forks worker processes must
    not have a refresh thread running while it forks.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    columns: list[str | ProgressColumn] = [TextColumn(label), BarColumn(), MofNCompleteColumn(), *(TextColumn(detail) for detail in details)]
    if elapsed:
        columns.append(TimeElapsedColumn())
    if remaining:
        if elapsed:
            columns.append(TextColumn("ETA"))  # two clocks side by side need telling apart
        columns.append(TimeRemainingColumn())
    return RichProgress(*columns, console=err, disable=not enabled, transient=not keep, auto_refresh=refresh_thread)
