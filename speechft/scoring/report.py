"""Scoring a hypothesis file against a reference file, and the compute-wer style report.

Differences from the guide's ``compute-wer`` (its defects, fixed on purpose):

- Utterances are reported in reference-file order, not in a different order every run.
- An empty reference with a non-empty hypothesis is a wrong sentence (its insertions are
  errors), not a correct one.
- A reference key missing from the hypothesis file is scored as all deletions, and the caller
  gets the keys to report; hypothesis keys absent from the reference are listed, not scored.
- ``<|zh|>``-style tags are removed before tokenising.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from speechft.errors import InputError
from speechft.io.textfile import STDIO, read_keyed
from speechft.scoring.align import (
    AlignedPair,
    Counts,
    EditOperation,
    aligned_lines,
    aligned_lines_many,
    aligned_pairs,
    edit_operations,
)
from speechft.scoring.tokenize import CLASSES, TokenSequence, is_ideographs, token_class, tokenize_many

RULE = "=" * 75


@dataclass(frozen=True, slots=True)
class UtteranceScore:
    """One reference utterance scored; `hypothesis_text` is None when the hypothesis is missing."""

    key: str
    counts: Counts
    reference_text: str
    hypothesis_text: str | None
    reference_tokens: TokenSequence
    hypothesis_tokens: TokenSequence
    edits: Sequence[EditOperation]
    """The alignment's edits, as :func:`speechft.scoring.align.edit_operations` returns them."""

    @property
    def missing(self) -> bool:
        return self.hypothesis_text is None

    def aligned_lines(self) -> tuple[str, str]:
        """compute-wer's ``ref:`` and ``hyp:`` lines (tokens padded to line up)."""
        return aligned_lines(self.reference_tokens, self.hypothesis_tokens, self.edits)

    def aligned_pairs(self) -> list[AlignedPair]:
        """Every column of the alignment, for display."""
        return aligned_pairs(self.reference_tokens, self.hypothesis_tokens, self.edits)


@dataclass(frozen=True)
class SystemScore:
    """Every reference utterance scored against one hypothesis file."""

    name: str
    utterances: tuple[UtteranceScore, ...]
    overall: Counts
    by_class: Mapping[str, Counts]
    """Counts per token class, in :data:`CLASSES` order, for classes with reference tokens;
    substitutions and deletions are classed by the reference token, insertions by the inserted one."""
    missing_keys: tuple[str, ...]
    """Reference keys with no hypothesis, in reference order (scored as all deletions)."""
    extra_keys: tuple[str, ...]
    """Hypothesis keys with no reference, in hypothesis order (not scored)."""
    by_character: bool = False
    sentences_wrong: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentences_wrong", sum(1 for utterance in self.utterances if utterance.counts.errors))

    @property
    def sentences(self) -> int:
        return len(self.utterances)

    @property
    def sentences_correct(self) -> int:
        return self.sentences - self.sentences_wrong

    @property
    def sentence_error_rate(self) -> float:
        return self.sentences_wrong / self.sentences if self.sentences else 0.0

    def worst(self, count: int) -> list[UtteranceScore]:
        """The `count` utterances with the most errors (then the highest rate, then file order)."""
        if count <= 0:
            return []
        wrong = (utterance for utterance in self.utterances if utterance.counts.errors)
        # nsmallest is stable (ties keep file order) and does not sort the whole corpus.
        return heapq.nsmallest(count, wrong, key=lambda utterance: (-utterance.counts.errors, -utterance.counts.error_rate))


def read_transcripts(path: str | Path, *, what: str) -> dict[str, str]:
    """Read a `key text` file into an ordered dict, fast; errors name the file and line.

    Decodes the whole file at once; on anything unusual (bad UTF-8, a repeated key) it hands over
    to :func:`speechft.io.textfile.read_keyed`, whose error names the line.
    """
    if str(path) == STDIO:
        return read_keyed(path, what=what)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read {what} ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return read_keyed(path, what=what)
    if text.startswith("\ufeff"):
        text = text[1:]
    # One split per line, as split_key does, without a call per line.
    rows = [line.split(None, 1) for line in text.split("\n")]
    rows = [row for row in rows if row]
    transcripts = {row[0]: row[1].rstrip() if len(row) > 1 else "" for row in rows}
    if len(transcripts) != len(rows):
        return read_keyed(path, what=what)  # raises on the first repeated key, with both lines
    return transcripts


def score_transcripts(
    references: Mapping[str, str],
    hypotheses: Mapping[str, str],
    *,
    name: str = "hypothesis",
    by_character: bool = False,
) -> SystemScore:
    """Score every reference utterance, in reference order, against its hypothesis."""
    with _collector_paused():
        return _score_transcripts(references, hypotheses, name=name, by_character=by_character)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    # Hundreds of thousands of small objects would make the cyclic garbage collector rescan the
    # heap again and again; nothing made while scoring or writing forms a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _score_transcripts(references: Mapping[str, str], hypotheses: Mapping[str, str], *, name: str, by_character: bool) -> SystemScore:
    utterances: list[UtteranceScore] = []
    missing_keys: list[str] = []
    class_totals = {name: [0, 0, 0, 0] for name in CLASSES}  # N, Sub, Del, Ins per class
    classes = _ClassCache()
    correct_total = substitutions_total = deletions_total = insertions_total = 0
    reference_sequences = tokenize_many(list(references.values()), by_character=by_character)
    hypothesis_sequences = tokenize_many([hypotheses.get(key, "") for key in references], by_character=by_character)
    for (key, reference_text), reference, hypothesis in zip(references.items(), reference_sequences, hypothesis_sequences):
        hypothesis_text = hypotheses.get(key)
        if hypothesis_text is None:
            missing_keys.append(key)
        edits = edit_operations(reference, hypothesis)
        substitutions = deletions = insertions = 0
        for operation, reference_index, hypothesis_index in edits:
            if operation == "replace":
                substitutions += 1
                class_totals[classes[reference[reference_index]]][1] += 1
            elif operation == "delete":
                deletions += 1
                class_totals[classes[reference[reference_index]]][2] += 1
            else:
                insertions += 1
                class_totals[classes[hypothesis[hypothesis_index]]][3] += 1
        counts = Counts(len(reference) - substitutions - deletions, substitutions, deletions, insertions)
        correct_total += counts.correct
        substitutions_total += substitutions
        deletions_total += deletions
        insertions_total += insertions
        utterances.append(UtteranceScore(key, counts, reference_text, hypothesis_text, reference, hypothesis, edits))
    _count_reference_classes(reference_sequences, class_totals, classes)
    extra_keys = tuple(key for key in hypotheses if key not in references)
    return SystemScore(
        name=name,
        utterances=tuple(utterances),
        overall=Counts(correct_total, substitutions_total, deletions_total, insertions_total),
        by_class=_class_counts(class_totals),
        missing_keys=tuple(missing_keys),
        extra_keys=extra_keys,
        by_character=by_character,
    )


class _ClassCache(dict[str, str]):
    """token -> class, computed on first sight (a corpus has a few thousand distinct tokens)."""

    def __missing__(self, token: str) -> str:
        self[token] = token_class(token)
        return self[token]


def _count_reference_classes(sequences: Sequence[TokenSequence], class_totals: Mapping[str, list[int]], classes: _ClassCache) -> None:
    # One pass over all reference tokens at once: a corpus of ideographs only is one regex check.
    characters = "".join(sequence for sequence in sequences if isinstance(sequence, str))
    if is_ideographs(characters):
        class_totals["Chinese"][0] += len(characters)
    else:
        for character, count in Counter(characters).items():
            class_totals[classes[character]][0] += count
    for sequence in sequences:
        if not isinstance(sequence, str):
            for token in sequence:
                class_totals[classes[token]][0] += 1


def _class_counts(class_totals: Mapping[str, Sequence[int]]) -> dict[str, Counts]:
    result: dict[str, Counts] = {}
    for name, (length, substitutions, deletions, insertions) in class_totals.items():
        if length:
            result[name] = Counts(length - substitutions - deletions, substitutions, deletions, insertions)
    return result


def write_compute_wer(score: SystemScore, stream: IO[str]) -> None:
    """Write the report in compute-wer's layout, so `tail -n8` shows the summary.

    Per utterance: ``utt:``, ``WER:``, ``ref:``, ``hyp:`` and a blank line; then the trailer:
    a rule, ``Overall ->``, one line per token class, ``SER -> ... ML= MH=`` and a rule.
    ML counts extra hypotheses (keys missing from the reference), MH missing hypotheses.
    """
    with _collector_paused():
        stream.write(_compute_wer_text(score))


def _compute_wer_text(score: SystemScore) -> str:
    parts: list[str] = []
    lines = aligned_lines_many([(utterance.reference_tokens, utterance.hypothesis_tokens, utterance.edits) for utterance in score.utterances])
    for utterance, (reference_line, hypothesis_line) in zip(score.utterances, lines):
        parts.append(f"utt: {utterance.key}\nWER: {utterance.counts.compute_wer_text()}\nref: {reference_line}\nhyp: {hypothesis_line}\n\n")
    parts.append(f"{RULE}\nOverall -> {score.overall.compute_wer_text()}\n")
    for name, counts in score.by_class.items():
        parts.append(f"{name} -> {counts.compute_wer_text()}\n")
    parts.append(
        f"SER -> {score.sentence_error_rate * 100:4.2f} % N={score.sentences} Cor={score.sentences_correct} "
        f"Err={score.sentences_wrong} ML={len(score.extra_keys)} MH={len(score.missing_keys)}\n{RULE}\n"
    )
    return "".join(parts)


def counts_json(counts: Counts) -> dict[str, Any]:
    """Counts as a JSON object; `error_rate` is a fraction (0.0523, not 5.23)."""
    return {
        "n": counts.reference_length,
        "correct": counts.correct,
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
        "errors": counts.errors,
        "error_rate": counts.error_rate,
    }


def system_json(score: SystemScore) -> dict[str, Any]:
    """Everything about one hypothesis file as plain JSON data."""
    return {
        "hypothesis": score.name,
        "by_character": score.by_character,
        "overall": counts_json(score.overall),
        "by_class": {name: counts_json(counts) for name, counts in score.by_class.items()},
        "sentences": {
            "n": score.sentences,
            "correct": score.sentences_correct,
            "wrong": score.sentences_wrong,
            "error_rate": score.sentence_error_rate,
        },
        "missing_keys": list(score.missing_keys),
        "extra_keys": list(score.extra_keys),
        "utterances": [{"key": utterance.key, "missing": utterance.missing, **counts_json(utterance.counts)} for utterance in score.utterances],
    }
