"""Batched decoding with the prompt the model was trained with.

Reads a `wav.scp` (`key path-or-URL`) or a prep jsonl (each line decoded with its own prompt) and
writes `key<TAB>text` in input order. Works on the official model directory and on any
`speechft train` output directory. Audio longer than 30 s is split at low-energy points and the
texts joined. A key whose audio is missing, corrupt or empty gets an empty text and a line in
`decode_errors.tsv`; the run goes on and exits 1 at the end. Results are flushed batch by batch:
after a crash, `--resume` decodes only what is missing. Decoding is greedy; beam search is not
available yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from speechft import console
from speechft.cli import options
from speechft.cli.common import guarded
from speechft.errors import InputError

if TYPE_CHECKING:
    from speechft.decode.run import DecodeSummary


@guarded
def command(
    model_dir: options.ModelDir,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write `key<TAB>text` lines.", show_default=False)],
    scp: Annotated[Path | None, typer.Option("--scp", help="`key path-or-URL` lines to decode.", show_default=False)] = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="A prep jsonl; each line is decoded with its own prompt.", show_default=False)] = None,
    language: options.Language = None,
    no_itn: Annotated[bool, typer.Option("--no-itn", help="Ask for text without normalisation (`语音转写，不进行文本规整：`).")] = False,
    prompt: options.Prompt = None,
    hotwords: Annotated[str | None, typer.Option("--hotwords", help="Comma-separated hotwords given to the model as context.", show_default=False)] = None,
    hotword_file: Annotated[Path | None, typer.Option("--hotword-file", help="One hotword per line.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Most utterances (segments) per batch.")] = 16,
    batch_seconds: Annotated[
        float | None, typer.Option("--batch-seconds", min=1.0, help="Also bound the padded audio seconds per batch.", show_default=False)
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Stop a transcript after this many tokens.")] = 512,
    tokens_per_second: Annotated[
        float,
        typer.Option(
            "--max-tokens-per-second",
            min=0.0,
            help="Also stop a transcript after 16 + this many tokens per second of its audio, so one looping utterance cannot hold up its batch (0: no such bound).",
        ),
    ] = 25.0,
    max_segment_seconds: Annotated[float, typer.Option("--max-segment-seconds", min=1.0, help="Split longer audio at quiet points.")] = 30.0,
    max_seconds_in_flight: Annotated[
        float,
        typer.Option(
            "--max-seconds-in-flight",
            min=1.0,
            help="Most seconds of audio loaded ahead of the model (64 KB of memory per second); a longer recording is loaded alone.",
        ),
    ] = 600.0,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Keep the keys already in OUTPUT and decode the rest.")] = False,
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="Where to list keys that could not be decoded \\[default: decode_errors.tsv beside OUTPUT].", show_default=False),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option("--ref", help="Score right away against this `key text` reference (both normalised as `speechft normalize` does).", show_default=False),
    ] = None,
    allow_missing: options.AllowMissing = False,
) -> None:
    from speechft.decode.inputs import read_inputs
    from speechft.decode.prompt import read_hotwords
    from speechft.decode.run import DecodeOptions

    words = read_hotwords(hotwords, hotword_file)
    inputs = read_inputs(model_dir, scp=scp, jsonl=jsonl, hotwords=words, language=language, no_itn=no_itn, prompt=prompt)
    for warning in inputs.warnings:
        console.err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    items = inputs.items
    console.err.print(f"decoding {len(items)} utterances {inputs.prompts}", soft_wrap=True)

    from speechft.data.audio import load_audio
    from speechft.decode.model import load_transcriber
    from speechft.decode.run import decode_items

    transcriber = load_transcriber(
        str(model_dir),
        device=device,
        max_new_tokens=max_new_tokens,
        tokens_per_second=tokens_per_second or None,
        allow_missing=allow_missing,
    )
    settings = DecodeOptions(
        batch_size=batch_size, batch_seconds=batch_seconds, max_segment_seconds=max_segment_seconds, resume=resume, max_seconds_in_flight=max_seconds_in_flight
    )
    with _progress(len(items)) as on_progress:
        summary = decode_items(items, transcriber, output, load_audio, settings, errors_path=errors, on_progress=on_progress)

    speed = summary.audio_seconds / summary.elapsed_s if summary.elapsed_s else 0.0
    console.err.print(
        f"decoded {summary.decoded} of {summary.total} utterances"
        + (f" ({summary.resumed} kept from an earlier run)" if summary.resumed else "")
        + f", {summary.audio_seconds:.1f} s of audio in {summary.elapsed_s:.1f} s "
        f"({speed:.1f}x real time, RTF {summary.real_time_factor:.3f}) -> {output}",
        soft_wrap=True,
    )
    if reference is not None:
        _score(reference, output)
    if summary.errors:
        errors_file = errors or output.parent / "decode_errors.tsv"
        raise InputError(
            f"{len(summary.errors)} utterance(s) could not be decoded (first: {summary.errors[0][0]}: "
            f"{summary.errors[0][1]}); they have empty texts, see {errors_file}"
        )


def _score(reference: Path, hypothesis: Path) -> None:
    """Normalise both sides as the guide does and print the score summary."""
    from speechft.scoring import render
    from speechft.scoring.report import read_transcripts, score_transcripts
    from speechft.text.normalize import normalize_text

    references = {key: normalize_text(text) for key, text in read_transcripts(reference, what="reference").items()}
    hypotheses = {key: normalize_text(text) for key, text in read_transcripts(hypothesis, what="hypothesis").items()}
    score = score_transcripts(references, hypotheses, name=str(hypothesis))
    render.render_key_warnings(console.err, score)
    render.render_summary(console.out, score)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[DecodeSummary], None]]:
    """Utterances, audio seconds and real-time factor while decoding (stderr)."""
    progress = console.progress("decode", "{task.fields[audio]:.0f} s audio, RTF {task.fields[rtf]:.3f}")
    task = progress.add_task("decode", total=total, audio=0.0, rtf=0.0)

    def update(summary: DecodeSummary) -> None:
        done = summary.resumed + summary.decoded + len(summary.errors)
        progress.update(task, completed=done, audio=summary.audio_seconds, rtf=summary.real_time_factor)

    with progress:
        yield update
