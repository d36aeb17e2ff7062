"""`speechft score` as one library call: score every hypothesis file, compare, write reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechft.errors import InputError, UsageError
from speechft.io.textfile import open_output
from speechft.scoring.compare import Comparison, compare, comparison_json
from speechft.scoring.report import SystemScore, read_transcripts, score_transcripts, system_json, write_compute_wer

# The policy of speechft.scoring.align, in one sentence for reports.
TIE_BREAKING = (
    "Equal-cost alignments are resolved as rapidfuzz's Levenshtein.editops (and compute-wer) resolve them: "
    "shared leading, then trailing tokens are matched; the rest is traced back from its end, preferring a "
    "deletion, then a substitution, then an insertion, then a match."
)


@dataclass(frozen=True)
class ScoringResult:
    """Every hypothesis file scored against one reference; comparisons[i] is scores[i + 1] vs scores[0]."""

    reference: str
    scores: tuple[SystemScore, ...]
    comparisons: tuple[Comparison, ...]


def system_labels(paths: Sequence[str]) -> list[str]:
    """Short names for hypothesis files: the file name, or as many trailing folders as make it unique."""
    parts = [Path(path).parts or (str(path),) for path in paths]
    for depth in range(1, max(len(part) for part in parts) + 1):
        labels = ["/".join(part[-depth:]) for part in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{position + 1}:{path}" for position, path in enumerate(paths)]


def score_hypotheses(
    reference_path: str | Path,
    hypothesis_paths: Sequence[str | Path],
    *,
    by_character: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> ScoringResult:
    """Score each hypothesis file against the reference; with several, compare each to the first."""
    if not hypothesis_paths:
        raise UsageError("give at least one hypothesis file")
    references = read_transcripts(reference_path, what="reference")
    if not references:
        raise InputError(f"{reference_path}: the reference has no utterances (expected `key text` lines)")
    labels = system_labels([str(path) for path in hypothesis_paths])
    scores = tuple(
        score_transcripts(references, read_transcripts(path, what="hypothesis"), name=label, by_character=by_character)
        for path, label in zip(hypothesis_paths, labels)
    )
    comparisons = tuple(compare(scores[0], candidate, resamples=resamples, seed=seed) for candidate in scores[1:])
    return ScoringResult(str(reference_path), scores, comparisons)


def check_outputs(reference_path: str | Path, hypothesis_paths: Sequence[str | Path], output_paths: Sequence[str | Path]) -> None:
    """One compute-wer output per hypothesis (same order), never over an input file."""
    if output_paths and len(output_paths) != len(hypothesis_paths):
        raise UsageError(
            f"got {len(output_paths)} --output for {len(hypothesis_paths)} hypothesis files; "
            "give one --output per HYP, in the same order (e.g. -o base.cer.txt -o tuned.cer.txt)"
        )
    inputs = {Path(path).resolve() for path in (reference_path, *hypothesis_paths) if str(path) != "-"}
    for output in output_paths:
        if str(output) != "-" and Path(output).resolve() in inputs:
            raise UsageError(f"--output {output} is one of the input files; choose another name")


def write_reports(result: ScoringResult, output_paths: Sequence[str | Path]) -> None:
    """Write one compute-wer style file per hypothesis, in `result.scores` order."""
    for score, path in zip(result.scores, output_paths):
        with open_output(path) as stream:
            write_compute_wer(score, stream)


def result_json(result: ScoringResult) -> dict[str, Any]:
    """The whole result as plain JSON data; rates are fractions."""
    return {
        "reference": result.reference,
        "tie_breaking": TIE_BREAKING,
        "systems": [system_json(score) for score in result.scores],
        "comparisons": [comparison_json(comparison) for comparison in result.comparisons],
    }


def write_json(result: ScoringResult, path: str | Path) -> None:
    with open_output(path) as stream:
        json.dump(result_json(result), stream, ensure_ascii=False, indent=1)
        stream.write("\n")
