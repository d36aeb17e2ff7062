"""The terminal view of a :class:`PrepSummary` (rich); the same facts are in `summary.json`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from speechft.data.prep import REJECT_REASONS, WARNINGS, PrepSummary


def _percentiles_row(table: Table, name: str, value: object, unit_format: str) -> None:
    if value is None:
        return
    table.add_row(
        name,
        *(unit_format.format(getattr(value, field)) for field in ("p5", "p50", "p95", "max")),
    )


def render_summary(summary: PrepSummary, console: Console) -> None:
    """Counts by outcome, hours, percentiles, prompts, profile and where the files went."""
    counts = Table(title="speechft prep", title_justify="left", show_edge=False)
    counts.add_column("utterances")
    counts.add_column("count", justify="right")
    counts.add_column("")
    counts.add_row("[bold]all keys[/]", f"{summary.total_keys}", "")
    counts.add_row("[green]kept[/]", f"{summary.kept}", f"train {summary.train}, validation {summary.validation}")
    counts.add_row(
        "[red]rejected[/]" if summary.rejected_total else "rejected",
        f"{summary.rejected_total}",
        f"{summary.reject_fraction:.2%} (limit {summary.max_reject_fraction:g})",
    )
    for reason, count in summary.rejected.items():
        counts.add_row(f"  {reason}", f"{count}", REJECT_REASONS.get(reason, ""))
    for name, count in summary.warnings.items():
        examples = ", ".join(summary.warning_examples.get(name, []))
        more = ", ..." if count > len(summary.warning_examples.get(name, [])) else ""
        counts.add_row(f"[yellow]warning[/] {name}", f"{count}", escape(f"{WARNINGS.get(name, '')}: {examples}{more}"))
    console.print(counts)

    if summary.duration_s is not None:
        spread = Table(show_edge=False)
        for column in ("kept", "p5", "p50", "p95", "max"):
            spread.add_column(column, justify="right" if column != "kept" else "left")
        _percentiles_row(spread, "duration (s)", summary.duration_s, "{:.2f}")
        _percentiles_row(spread, "text tokens", summary.text_tokens, "{:.0f}")
        console.print(spread)

    console.print(f"audio kept: [bold]{summary.hours:.3f} h[/] (train {summary.train_hours:.3f} h)")
    for prompt, count in summary.prompts_used.items():
        console.print(f"prompt {escape(repr(prompt))}: {count} training utterances")
    console.print(f"recommended profile: [bold]{summary.recommended_profile}[/] ({escape(summary.profile_note)})")
    for name, path in summary.outputs.items():
        console.print(f"{name}: {escape(path)}")
    console.print(f"tokenizer: {escape(summary.tokenizer)}; {summary.jobs} jobs; {summary.elapsed_s:.2f} s")
