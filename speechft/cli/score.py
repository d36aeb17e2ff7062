"""Score hypotheses against a reference: CER/WER, compute-wer's report file, and comparisons.

Scoring follows the guide's `compute-wer`: Chinese/Japanese kana/Thai characters are one token
each, runs of letters and digits one word, case is ignored, `<|zh|>`-style tags are removed.
Utterances come in reference order; a reference key missing from HYP counts as all deletions
(and is reported), hypothesis keys not in REF are reported and not scored. Give several HYP files
(e.g. baseline then fine-tuned) to compare them against the first, with a paired bootstrap
confidence interval over utterances. Among equal-cost alignments the one compute-wer reports is
kept (traced back from the end: deletion, then substitution, then insertion), so Sub/Del/Ins
match it exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechft import console
from speechft.cli.common import guarded


@guarded
def command(
    reference: Annotated[Path, typer.Argument(metavar="REF", help="Reference `key text` file (normalised).", show_default=False)],
    hypotheses: Annotated[
        list[Path],
        typer.Argument(metavar="HYP", help="Hypothesis `key text` file(s); the first is the baseline.", show_default=False),
    ],
    output: Annotated[
        list[Path] | None,
        typer.Option(
            "--output",
            "-o",
            help="Write compute-wer's report (per-utterance alignment, `tail -n8` summary) here; give it once per HYP, in HYP order.",
            show_default=False,
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write everything as JSON: overall, per class, per utterance, missing/extra keys, comparisons.", show_default=False),
    ] = None,
    char: Annotated[
        bool,
        typer.Option(
            "--char",
            help="Split every token into characters, so English words and numbers are scored per "
            "letter/digit too (a character error rate for all text); spaces are ignored.",
        ),
    ] = False,
    worst: Annotated[int, typer.Option("--worst", min=0, help="Show this many worst utterances (most errors).")] = 10,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=1, help="Bootstrap resamples for the confidence interval.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap, for reproducible intervals.")] = 0,
) -> None:
    from speechft.scoring import render
    from speechft.scoring.run import check_outputs, score_hypotheses, write_json, write_reports

    outputs = output or []
    check_outputs(reference, hypotheses, outputs)
    result = score_hypotheses(reference, hypotheses, by_character=char, resamples=bootstrap, seed=seed)
    write_reports(result, outputs)
    if json_path is not None:
        write_json(result, json_path)
    for score in result.scores:
        render.render_key_warnings(console.err, score)
    for score in result.scores:
        render.render_summary(console.out, score)
        if len(result.scores) == 1:
            render.render_worst(console.out, score, worst)
    if result.comparisons:
        render.render_comparison(console.out, result.scores, result.comparisons)
    for score, path in zip(result.scores, outputs):
        console.err.print(f"wrote {path} ({score.name})", soft_wrap=True)
