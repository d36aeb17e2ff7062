"""Kaldi-style wav.scp + text -> the ChatML jsonl Fun-ASR-Nano trains on, validated, nothing silently dropped.

Keys are joined by name; every key lands in the jsonl or in the rejects file with a reason.
Writes OUT, OUT-stem.rejects.tsv, OUT-stem.summary.json and OUT-stem.prompt.json (the prompt
policy that train and decode reuse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechft.cli.common import guarded


@guarded
def command(
    scp: Annotated[Path, typer.Option("--scp", help="wav.scp: `key path-or-URL` per line.")],
    text: Annotated[Path, typer.Option("--text", help="Kaldi text: `key transcript` per line.")],
    out: Annotated[Path, typer.Option("--out", help="The training jsonl to write, e.g. data/train.jsonl.")],
    model_dir: Annotated[
        Optional[Path], typer.Option("--model-dir", help="Fun-ASR-Nano directory; its Qwen3-0.6B/ tokenizer is used.")
    ] = None,
    tokenizer: Annotated[
        Optional[Path], typer.Option("--tokenizer", help="Tokenizer directory (instead of --model-dir).")
    ] = None,
    language: Annotated[
        Optional[str], typer.Option("--language", help="Target language for the prompt: zh, en, ja, ko, yue or a name.")
    ] = None,
    itn: Annotated[
        str,
        typer.Option(
            "--itn",
            help="auto: no-normalisation prompt for transcripts without digits or punctuation; "
            "on: always the normalising prompt; off: always the no-normalisation prompt.",
        ),
    ] = "auto",
    prompt_style: Annotated[str, typer.Option("--prompt-style", help="Prompt wording: zh or en.")] = "zh",
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Use this prompt for every line.")] = None,
    segments: Annotated[
        Optional[Path], typer.Option("--segments", help="Kaldi segments: `utt recording start end` (seconds).")
    ] = None,
    audio_out: Annotated[
        Optional[Path], typer.Option("--audio-out", help="Directory for the 16 kHz mono files cut from --segments.")
    ] = None,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of utterances for validation (by key hash, deterministic).")
    ] = 0.0,
    val_out: Annotated[
        Optional[Path], typer.Option("--val-out", help="Validation jsonl \\[default: OUT-stem.val.jsonl].")
    ] = None,
    val_seed: Annotated[int, typer.Option("--val-seed", help="Seed of the validation split.")] = 0,
    rejects: Annotated[
        Optional[Path], typer.Option("--rejects", help="Rejects file \\[default: OUT-stem.rejects.tsv].")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes \\[default: every core].")] = 0,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Reject audio shorter than this (fbank frames).")] = 10,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Reject audio longer than this (fbank frames).")] = 12000,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Reject transcripts longer than this (tokens).")] = 2048,
    max_reject_fraction: Annotated[
        float, typer.Option("--max-reject-fraction", help="Exit non-zero when more than this share is rejected.")
    ] = 0.05,
    url_timeout: Annotated[float, typer.Option("--url-timeout", help="Seconds per download attempt of a URL.")] = 30.0,
    url_retries: Annotated[int, typer.Option("--url-retries", help="Extra attempts for a failing URL.")] = 2,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from speechft import console
    from speechft.data.prep import PrepOptions, TooManyRejectsError, prepare
    from speechft.data.prompts import PromptPolicy
    from speechft.data.report import render_summary
    from speechft.errors import ConfigError, UsageError
    from speechft.model.tokenizer import tokenizer_dir_for

    if model_dir is not None and tokenizer is not None:
        raise UsageError("give --model-dir or --tokenizer, not both")
    try:
        policy = PromptPolicy(language=language, itn=itn, style=prompt_style, override=prompt)  # type: ignore[arg-type]
    except ConfigError as error:
        raise UsageError(str(error)) from None
    options = PrepOptions(
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
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console.err, auto_refresh=False, transient=True,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)
        progress.refresh()

    try:
        with progress:
            summary = prepare(options, report)
    except TooManyRejectsError as error:
        render_summary(error.summary, console.out)
        raise
    render_summary(summary, console.out)
