"""Kaldi-style wav.scp + text -> the ChatML jsonl Fun-ASR-Nano trains on, validated, nothing silently dropped.

Keys are joined by name; every key lands in the jsonl or in the rejects file with a reason.
Writes OUT, OUT-stem.rejects.tsv, OUT-stem.summary.json and OUT-stem.prompt.json (the prompt
policy that train and decode reuse).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from speechft import console
from speechft.cli import options
from speechft.cli.common import guarded

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from speechft.data.prep.summary import PrepSummary


@guarded
def command(
    scp: Annotated[Path, typer.Option("--scp", help="wav.scp: `key path-or-URL` per line.")],
    text: Annotated[Path, typer.Option("--text", help="Kaldi text: `key transcript` per line.")],
    out: Annotated[Path, typer.Option("--out", help="The training jsonl to write, e.g. data/train.jsonl.")],
    model_dir: options.OptionalModelDir = None,
    tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Tokenizer directory (instead of --model-dir).")] = None,
    language: options.Language = None,
    itn: Annotated[
        str,
        typer.Option(
            "--itn",
            help="auto: no-normalisation prompt for transcripts without digits or punctuation; "
            "on: always the normalising prompt; off: always the no-normalisation prompt.",
        ),
    ] = "auto",
    prompt_style: Annotated[str, typer.Option("--prompt-style", help="Prompt wording: zh or en.")] = "zh",
    prompt: options.Prompt = None,
    segments: Annotated[Path | None, typer.Option("--segments", help="Kaldi segments: `utt recording start end` (seconds).")] = None,
    audio_out: Annotated[Path | None, typer.Option("--audio-out", help="Directory for the 16 kHz mono files cut from --segments.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of utterances for validation (by key hash, deterministic).")] = 0.0,
    val_out: Annotated[Path | None, typer.Option("--val-out", help="Validation jsonl \\[default: OUT-stem.val.jsonl].")] = None,
    val_seed: Annotated[int, typer.Option("--val-seed", help="Seed of the validation split.")] = 0,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Rejects file \\[default: OUT-stem.rejects.tsv].")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes \\[default: every core].")] = 0,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Reject audio shorter than this (fbank frames).")] = 10,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Reject audio longer than this (fbank frames).")] = 12000,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Reject transcripts longer than this (tokens).")] = 2048,
    max_reject_fraction: Annotated[float, typer.Option("--max-reject-fraction", help="Exit non-zero when more than this share is rejected.")] = 0.05,
    url_timeout: Annotated[float, typer.Option("--url-timeout", help="Seconds per download attempt of a URL.")] = 30.0,
    url_retries: Annotated[int, typer.Option("--url-retries", help="Extra attempts for a failing URL.")] = 2,
) -> None:
    from speechft.data.prep.options import PrepOptions
    from speechft.data.prep.pipeline import prepare
    from speechft.data.prep.summary import TooManyRejectsError
    from speechft.data.prompts import PromptPolicy
    from speechft.errors import ConfigError, UsageError
    from speechft.model.tokenizer import tokenizer_dir_for

    if model_dir is not None and tokenizer is not None:
        raise UsageError("give --model-dir or --tokenizer, not both")
    try:
        policy = PromptPolicy(language=language, itn=itn, style=prompt_style, override=prompt)  # type: ignore[arg-type]
    except ConfigError as error:
        raise UsageError(str(error)) from None
    prep_options = PrepOptions(
        scp=scp,
        text=text,
        out=out,
        tokenizer_dir=tokenizer_dir_for(model_dir, tokenizer),
        policy=policy,
        segments=segments,
        audio_out=audio_out,
        val_fraction=val_fraction,
        val_out=val_out,
        val_seed=val_seed,
        rejects=rejects,
        jobs=jobs,
        min_frames=min_frames,
        max_frames=max_frames,
        max_tokens=max_tokens,
        max_reject_fraction=max_reject_fraction,
        url_timeout_s=url_timeout,
        url_retries=url_retries,
    )
    # No refresh thread: prep forks worker processes, and forking beside a running thread is unsafe.
    progress = console.progress("{task.description}", elapsed=True, remaining=False, refresh_thread=False)
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)
        progress.refresh()

    try:
        with progress:
            summary = prepare(prep_options, report)
    except TooManyRejectsError as error:
        render_summary(error.summary, console.out)
        raise
    render_summary(summary, console.out)


def render_summary(summary: PrepSummary, out: Console) -> None:
    """Counts by outcome, hours, percentiles, prompts, profile and where the files went (`summary.json` holds the same)."""
    from rich.markup import escape

    out.print(_counts_table(summary))
    if summary.duration_s is not None:
        out.print(_spread_table(summary))
    out.print(f"audio kept: [bold]{summary.hours:.3f} h[/] (train {summary.train_hours:.3f} h)")
    for prompt, count in summary.prompts_used.items():
        out.print(f"prompt {escape(repr(prompt))}: {count} training utterances")
    out.print(f"recommended profile: [bold]{summary.recommended_profile}[/] ({escape(summary.profile_note)})")
    for name, path in summary.outputs.items():
        out.print(f"{name}: {escape(path)}")
    out.print(f"tokenizer: {escape(summary.tokenizer)}; {summary.jobs} jobs; {summary.elapsed_s:.2f} s")


def _counts_table(summary: PrepSummary) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from speechft.data.prep.reasons import REJECT_REASONS, WARNINGS

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
        examples = summary.warning_examples.get(name, [])
        more = ", ..." if count > len(examples) else ""
        counts.add_row(f"[yellow]warning[/] {name}", f"{count}", escape(f"{WARNINGS.get(name, '')}: {', '.join(examples)}{more}"))
    return counts


def _spread_table(summary: PrepSummary) -> Table:
    from rich.table import Table

    spread = Table(show_edge=False)
    for column in ("kept", "p5", "p50", "p95", "max"):
        spread.add_column(column, justify="right" if column != "kept" else "left")
    for name, value, unit in (("duration (s)", summary.duration_s, "{:.2f}"), ("text tokens", summary.text_tokens, "{:.0f}")):
        if value is not None:
            spread.add_row(name, *(unit.format(number) for number in (value.p5, value.p50, value.p95, value.max)))
    return spread
