"""Terminal rendering of scores with rich: summary tables, worst utterances, comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from speechft.scoring.align import Counts
from speechft.scoring.compare import Comparison
from speechft.scoring.report import SystemScore, UtteranceScore

# How many keys a warning lists before "...".
_KEYS_SHOWN = 5

_STYLE_BY_OPERATION = {"replace": "bold yellow", "delete": "bold red", "insert": "bold green"}


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}"


def _rate_label(class_name: str, by_character: bool) -> str:
    return "CER" if by_character or class_name in ("Chinese", "Japanese") else "WER"


def render_summary(console: Console, score: SystemScore) -> None:
    """Overall and per-class counts as a table, then Kaldi's one-line summary."""
    table = Table(title=f"{score.name}", title_justify="left")
    table.add_column("Tokens")
    table.add_column("Rate", justify="right")
    for header in ("Err %", "N", "Cor", "Sub", "Del", "Ins", "SER %"):
        table.add_column(header, justify="right")
    rows: list[tuple[str, str, Counts, str]] = [("Overall", "CER" if score.by_character else "mixed", score.overall, _percent(score.sentence_error_rate))]
    for name, counts in score.by_class.items():
        rows.append((name, _rate_label(name, score.by_character), counts, ""))
    for name, label, counts, sentence_rate in rows:
        table.add_row(
            name,
            label,
            _percent(counts.error_rate),
            str(counts.reference_length),
            str(counts.correct),
            str(counts.substitutions),
            str(counts.deletions),
            str(counts.insertions),
            sentence_rate,
            style="bold" if name == "Overall" else None,
        )
    console.print(table)
    console.print(
        Text(
            f"{score.overall.kaldi_text('CER' if score.by_character else 'WER')}   "
            f"SER {_percent(score.sentence_error_rate)} [ {score.sentences_wrong} / {score.sentences} ]"
        )
    )


def render_worst(console: Console, score: SystemScore, count: int) -> None:
    """The `count` utterances with the most errors, each with its alignment, errors coloured."""
    worst = score.worst(count)
    if not worst:
        return
    console.print(
        Text.assemble(
            (f"Worst {len(worst)} utterances of {score.name} ", "bold"),
            "(",
            ("substituted", _STYLE_BY_OPERATION["replace"]),
            ", ",
            ("deleted", _STYLE_BY_OPERATION["delete"]),
            ", ",
            ("inserted", _STYLE_BY_OPERATION["insert"]),
            "; * marks a missing token)",
        )
    )
    for utterance in worst:
        header = Text(f"{utterance.key}  ", style="cyan")
        header.append(utterance.counts.compute_wer_text())
        if utterance.missing:
            header.append("  (no hypothesis)", style="red")
        console.print(header)
        reference_line, hypothesis_line = _highlighted_lines(utterance)
        console.print(Text("  ref: ") + reference_line, no_wrap=True, overflow="fold")
        console.print(Text("  hyp: ") + hypothesis_line, no_wrap=True, overflow="fold")


def _highlighted_lines(utterance: UtteranceScore) -> tuple[Text, Text]:
    reference_line = Text()
    hypothesis_line = Text()
    for column, pair in enumerate(utterance.aligned_pairs()):
        style = _STYLE_BY_OPERATION.get(pair.operation)
        if column:
            reference_line.append(" ")
            hypothesis_line.append(" ")
        width = max(Text(pair.reference).cell_len, Text(pair.hypothesis).cell_len)
        reference_shown = pair.reference if pair.reference else "*" * width
        hypothesis_shown = pair.hypothesis if pair.hypothesis else "*" * width
        reference_line.append(_pad(reference_shown, width), style=style)
        hypothesis_line.append(_pad(hypothesis_shown, width), style=style)
    return reference_line, hypothesis_line


def _pad(token: str, width: int) -> str:
    return token + " " * (width - Text(token).cell_len)


def render_key_warnings(console: Console, score: SystemScore) -> None:
    """Say loudly which references lack a hypothesis and which hypotheses lack a reference."""
    if score.missing_keys:
        console.print(
            Text.assemble(
                ("warning: ", "bold red"),
                f"{len(score.missing_keys)} of {score.sentences} reference utterances have no hypothesis in "
                f"{score.name}; each is scored as all deletions: {_some_keys(score.missing_keys)}",
            )
        )
    if score.extra_keys:
        console.print(
            Text.assemble(
                ("warning: ", "bold yellow"),
                f"{len(score.extra_keys)} hypotheses in {score.name} have no reference and are not scored: {_some_keys(score.extra_keys)}",
            )
        )


def _some_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return shown + (f", ... ({len(keys) - _KEYS_SHOWN} more)" if len(keys) > _KEYS_SHOWN else "")


def render_comparison(console: Console, scores: Sequence[SystemScore], comparisons: Sequence[Comparison]) -> None:
    """Systems side by side with the change against the first; `comparisons[i]` is for `scores[i + 1]`."""
    table = Table(title="Against the first hypothesis (per-class rates: tables above)", title_justify="left")
    table.add_column("Hypothesis", overflow="fold")
    table.add_column("Err %", justify="right", no_wrap=True)
    table.add_column("SER %", justify="right", no_wrap=True)
    table.add_column("Change pp", justify="right", no_wrap=True)
    table.add_column("Relative", justify="right", no_wrap=True)
    confidence = comparisons[0].confidence if comparisons else 0.95
    table.add_column(f"{confidence:.0%} CI pp", justify="right", no_wrap=True)
    for position, score in enumerate(scores):
        cells: list[str | Text] = [score.name, _percent(score.overall.error_rate), _percent(score.sentence_error_rate)]
        comparison = comparisons[position - 1] if 0 < position <= len(comparisons) else None
        if comparison is None:
            cells += ["baseline" if position == 0 else "-", "", ""]
        else:
            relative = "-" if comparison.relative_change is None else f"{comparison.relative_change * 100:+.1f}%"
            interval = f"[{comparison.interval_low * 100:+.2f}, {comparison.interval_high * 100:+.2f}]"
            style = ("green" if comparison.absolute_change < 0 else "red") if comparison.significant else ""
            cells += [
                Text(f"{comparison.absolute_change * 100:+.2f}", style=style),
                relative,
                Text(interval + (" *" if comparison.significant else ""), style=style),
            ]
        table.add_row(*cells)
    console.print(table)
    if comparisons:
        first = comparisons[0]
        console.print(
            Text(
                f"pp = percentage points; CI: paired bootstrap over utterances, {first.resamples} resamples, seed {first.seed}; * = excludes 0",
                style="dim",
            )
        )
