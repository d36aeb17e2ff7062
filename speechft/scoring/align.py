"""Minimum-edit-distance alignment of token sequences, and the counts it yields.

Tie-breaking: many alignments can share the minimum cost (``A B`` vs ``B C`` is two
substitutions, or a deletion, a match and an insertion; speechft reports the former). speechft always takes the one
rapidfuzz's ``Levenshtein.editops`` returns, which is also the one the guide's ``compute-wer``
reports, so Cor/Sub/Del/Ins agree with it exactly, not only their sum:

    Tokens shared at the start, then tokens shared at the end, are matched. The rest is traced
    back from its end; at each step, among the moves that lie on a minimum-cost path, a deletion
    is taken first, then a substitution, then an insertion, then a match.

So deletions are pushed towards the end of a stretch of errors, and an insertion is only chosen
where a substitution would cost more. (rapidfuzz splits utterances of thousands of tokens in half
first; the cost is still minimal, but the Sub/Del/Ins split may then differ from the rule.)
The same alignment gives the counts and the displayed ``ref:``/``hyp:`` lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rapidfuzz.distance import Levenshtein

from speechft.scoring.tokenize import TokenSequence, display_width

Operation = Literal["equal", "replace", "delete", "insert"]
EditOperation = tuple[str, int, int]
"""``(operation, reference_index, hypothesis_index)`` for one edit, as rapidfuzz lists them."""


@dataclass(frozen=True)
class Counts:
    """Edit counts of one utterance or a sum of them; N = correct + substitutions + deletions."""

    correct: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def reference_length(self) -> int:
        return self.correct + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float:
        """(S + D + I) / N; with no reference tokens, 1.0 if anything was inserted, else 0.0."""
        if self.reference_length == 0:
            return 1.0 if self.insertions else 0.0
        return self.errors / self.reference_length

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.correct + other.correct,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )

    def compute_wer_text(self) -> str:
        """``12.50 % N=8 Cor=7 Sub=1 Del=0 Ins=0`` as compute-wer writes it."""
        length = self.correct + self.substitutions + self.deletions
        errors = self.substitutions + self.deletions + self.insertions
        rate = errors / length if length else (1.0 if errors else 0.0)  # as error_rate, inlined
        return f"{rate * 100:4.2f} % N={length} Cor={self.correct} Sub={self.substitutions} Del={self.deletions} Ins={self.insertions}"

    def kaldi_text(self, label: str = "WER") -> str:
        """``%WER 5.23 [ 65 / 1234, 6 ins, 19 del, 40 sub ]`` as Kaldi's compute-wer prints it."""
        return (
            f"%{label} {self.error_rate * 100:.2f} [ {self.errors} / {self.reference_length}, "
            f"{self.insertions} ins, {self.deletions} del, {self.substitutions} sub ]"
        )


@dataclass(frozen=True)
class AlignedPair:
    """One column of an alignment; the missing side of a deletion or insertion is ``""``."""

    operation: Operation
    reference: str
    hypothesis: str


def edit_operations(reference: TokenSequence, hypothesis: TokenSequence) -> list[EditOperation]:
    """The edits (no matches) of the minimum-cost alignment chosen as the module docstring says."""
    if isinstance(reference, str) and isinstance(hypothesis, str):
        # One token per character: rapidfuzz compares code points exactly.
        return [] if reference == hypothesis else Levenshtein.editops(reference, hypothesis).as_list()
    reference, hypothesis = list(reference), list(hypothesis)
    return [] if reference == hypothesis else Levenshtein.editops(reference, hypothesis).as_list()


def align(reference: TokenSequence, hypothesis: TokenSequence) -> list[AlignedPair]:
    """Every column of the alignment, matches included, left to right."""
    return aligned_pairs(reference, hypothesis, edit_operations(reference, hypothesis))


def aligned_pairs(reference: TokenSequence, hypothesis: TokenSequence, edits: Sequence[EditOperation]) -> list[AlignedPair]:
    """Every column of the alignment given its edits, matches included, left to right."""
    pairs: list[AlignedPair] = []
    reference_index = hypothesis_index = 0
    for operation, edit_reference, edit_hypothesis in edits:
        while reference_index < edit_reference and hypothesis_index < edit_hypothesis:
            pairs.append(AlignedPair("equal", reference[reference_index], hypothesis[hypothesis_index]))
            reference_index += 1
            hypothesis_index += 1
        if operation == "replace":
            pairs.append(AlignedPair("replace", reference[reference_index], hypothesis[hypothesis_index]))
            reference_index += 1
            hypothesis_index += 1
        elif operation == "delete":
            pairs.append(AlignedPair("delete", reference[reference_index], ""))
            reference_index += 1
        else:
            pairs.append(AlignedPair("insert", "", hypothesis[hypothesis_index]))
            hypothesis_index += 1
    for offset in range(len(reference) - reference_index):
        pairs.append(AlignedPair("equal", reference[reference_index + offset], hypothesis[hypothesis_index + offset]))
    return pairs


def aligned_lines(reference: TokenSequence, hypothesis: TokenSequence, edits: Sequence[EditOperation]) -> tuple[str, str]:
    """The alignment as two lines whose tokens line up in a terminal (compute-wer's layout).

    Tokens are separated by single spaces; a deleted token faces spaces of its display width, an
    inserted one too, and the narrower token of a substitution is padded on the right.
    """
    if not edits:
        return " ".join(reference), " ".join(hypothesis)
    if isinstance(reference, str) and isinstance(hypothesis, str):
        reference_line, hypothesis_line = _spaced_lines(_character_columns(reference, hypothesis, edits))
        return reference_line, hypothesis_line
    # Matched stretches hold the same tokens on both sides, so they go in whole, unpadded; only
    # the (few) edited tokens are measured and padded.
    reference_parts: list[str] = []
    hypothesis_parts: list[str] = []
    reference_index = hypothesis_index = 0
    for operation, edit_reference, edit_hypothesis in edits:
        if edit_reference > reference_index:
            reference_parts.append(" ".join(reference[reference_index:edit_reference]))
            hypothesis_parts.append(" ".join(hypothesis[hypothesis_index:edit_hypothesis]))
            reference_index, hypothesis_index = edit_reference, edit_hypothesis
        if operation == "replace":
            reference_token = reference[reference_index]
            hypothesis_token = hypothesis[hypothesis_index]
            difference = display_width(hypothesis_token) - display_width(reference_token)
            if difference > 0:
                reference_token += " " * difference
            elif difference < 0:
                hypothesis_token += " " * -difference
            reference_parts.append(reference_token)
            hypothesis_parts.append(hypothesis_token)
            reference_index += 1
            hypothesis_index += 1
        elif operation == "delete":
            reference_token = reference[reference_index]
            reference_parts.append(reference_token)
            hypothesis_parts.append(" " * display_width(reference_token))
            reference_index += 1
        else:
            hypothesis_token = hypothesis[hypothesis_index]
            reference_parts.append(" " * display_width(hypothesis_token))
            hypothesis_parts.append(hypothesis_token)
            hypothesis_index += 1
    reference_parts.append(" ".join(reference[reference_index:]))
    hypothesis_parts.append(" ".join(hypothesis[hypothesis_index:]))
    # Empty parts are the empty matched stretches; dropping them keeps single separators.
    return " ".join(filter(None, reference_parts)), " ".join(filter(None, hypothesis_parts))


# Placeholders for _aligned_character_lines; token strings never hold control characters.
_PAD = "\x00"  # after a substituted character: one extra column (its separator's space stays)
_GAP = ("", "\x01", "\x02")  # a missing token of width 1 or 2


def aligned_lines_many(
    alignments: Sequence[tuple[TokenSequence, TokenSequence, Sequence[EditOperation]]],
) -> list[tuple[str, str]]:
    """:func:`aligned_lines` for many `(reference, hypothesis, edits)` at once, faster.

    One-character-per-token pairs (Chinese) are laid out as columns and spaced out for the whole
    corpus in a few string operations; other pairs go through :func:`aligned_lines`.
    """
    lines: list[tuple[str, str]] = [("", "")] * len(alignments)
    character_positions: list[int] = []
    reference_columns: list[str] = []
    hypothesis_columns: list[str] = []
    for position, (reference, hypothesis, edits) in enumerate(alignments):
        if isinstance(reference, str) and isinstance(hypothesis, str):
            if edits:
                reference, hypothesis = _character_columns(reference, hypothesis, edits)
            character_positions.append(position)
            reference_columns.append(reference)
            hypothesis_columns.append(hypothesis)
        else:
            lines[position] = aligned_lines(reference, hypothesis, edits)
    spaced = zip(character_positions, _spaced_lines(reference_columns), _spaced_lines(hypothesis_columns))
    for position, reference_line, hypothesis_line in spaced:
        lines[position] = (reference_line, hypothesis_line)
    return lines


# Placeholders in column strings; tokens never hold control characters.
_PAD = "\x00"  # after a substituted character: one extra column (its separator's space stays)
_GAP = ("", "\x01", "\x02")  # a missing token of width 1 or 2


def _character_columns(reference: str, hypothesis: str, edits: Sequence[EditOperation]) -> tuple[str, str]:
    # The layout of aligned_lines for one-character tokens, as two strings of one character per
    # column (placeholders for gaps and padding) to be spaced out later in one go.
    reference_parts: list[str] = []
    hypothesis_parts: list[str] = []
    reference_index = hypothesis_index = 0
    for operation, edit_reference, edit_hypothesis in edits:
        if edit_reference > reference_index:
            reference_parts.append(reference[reference_index:edit_reference])
            hypothesis_parts.append(hypothesis[hypothesis_index:edit_hypothesis])
            reference_index, hypothesis_index = edit_reference, edit_hypothesis
        if operation == "replace":
            reference_token = reference[reference_index]
            hypothesis_token = hypothesis[hypothesis_index]
            difference = display_width(hypothesis_token) - display_width(reference_token)
            reference_parts.append(reference_token + _PAD * difference)
            hypothesis_parts.append(hypothesis_token + _PAD * -difference)
            reference_index += 1
            hypothesis_index += 1
        elif operation == "delete":
            reference_token = reference[reference_index]
            reference_parts.append(reference_token)
            hypothesis_parts.append(_GAP[display_width(reference_token)])
            reference_index += 1
        else:
            hypothesis_token = hypothesis[hypothesis_index]
            reference_parts.append(_GAP[display_width(hypothesis_token)])
            hypothesis_parts.append(hypothesis_token)
            hypothesis_index += 1
    reference_parts.append(reference[reference_index:])
    hypothesis_parts.append(hypothesis[hypothesis_index:])
    return "".join(reference_parts), "".join(hypothesis_parts)


def _spaced_lines(columns: Sequence[str]) -> list[str]:
    # Space every column of every line at once: join the lines with newlines, put a space between
    # all characters, take back the spaces next to the newlines, then fill in the placeholders.
    text = "\n".join(columns)
    spaced = _space_out(text) if len(text) > 1 else text
    spaced = spaced.replace(" \n", "\n").replace("\n ", "\n")
    return spaced.replace("\x01", " ").replace("\x02", "  ").replace(_PAD, "").split("\n")


# Below this many characters str.join is quick enough and numpy need not be imported.
_NUMPY_FROM = 200_000


def _space_out(text: str) -> str:
    """`" ".join(text)`; large texts go through numpy, as joining makes one object per character."""
    if len(text) < _NUMPY_FROM:
        return " ".join(text)
    import numpy

    codes = numpy.frombuffer(text.encode("utf-32-le"), dtype=numpy.uint32)
    spaced = numpy.full(2 * len(codes) - 1, ord(" "), dtype=numpy.uint32)
    spaced[0::2] = codes
    return spaced.tobytes().decode("utf-32-le")
