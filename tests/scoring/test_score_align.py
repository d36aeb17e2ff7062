"""Alignment and counts: public edit-distance cases, and the documented tie-breaking rule."""

from __future__ import annotations

import random

import pytest

from speechft.scoring.align import (
    AlignedPair,
    Counts,
    align,
    aligned_lines,
    aligned_lines_many,
    edit_operations,
)


def counts(reference, hypothesis) -> Counts:
    """The counts of the edit script alone, so they check edit_operations apart from the report's counting."""
    edits = [operation for operation, _, _ in edit_operations(reference, hypothesis)]
    substitutions, deletions = edits.count("replace"), edits.count("delete")
    return Counts(len(reference) - substitutions - deletions, substitutions, deletions, edits.count("insert"))


# Kaldi, src/util/edit-distance-test.cc (TestEditDistance / TestEditDistanceString): the sequences
# grow step by step; each pair is (reference, hypothesis, total cost).
KALDI_DISTANCE_CASES = [
    ([], [], 0),
    (["1"], [], 1),
    (["1"], ["1"], 0),
    (["1"], ["1", "2"], 1),
    (["1", "2"], ["1", "2"], 0),
    (["1", "2", "3", "4"], ["1", "2", "4"], 1),
    (["1", "2", "3", "4", "5"], ["1", "2", "4"], 2),
    (["1", "2", "3", "4", "5"], ["1", "2", "4", "6"], 2),
    (["1", "2", "3", "4", "5", "1"], ["1", "2", "4", "6", "1"], 2),
    (["1", "2", "3", "4", "5", "1"], ["1", "2", "4", "6", "1", "10"], 3),
]

# Kaldi, TestEditDistance2 / TestEditDistance2String: (reference, hypothesis, ins, del, sub).
KALDI_COUNT_CASES = [
    (["2", "3", "4", "5", "6", "7"], ["1", "3", "4", "5"], 0, 2, 1),
    (["1", "3", "4", "5"], ["2", "3", "4", "5", "6", "7"], 2, 0, 1),
    (["1"], ["1"], 0, 0, 0),
    (["1", "3"], ["1", "2"], 0, 0, 1),
]

# kaldialign, tests/test_align.py: (reference, hypothesis, total, ins, del, sub, kaldialign's
# alignment). Where several alignments cost the same, kaldialign may choose another one than
# speechft; the total always agrees, the counts agree where marked.
KALDIALIGN_CASES = [
    (["a", "b", "c"], ["a", "s", "x", "c"], 2, 1, 0, 1, True),
    (["a", "b"], ["b", "c"], 2, 1, 1, 0, False),  # speechft: two substitutions (same cost)
    (["A", "B", "C"], ["D", "C", "A"], 3, 1, 1, 1, False),  # speechft: three substitutions
    (["A", "B", "C", "D"], ["C", "E", "D", "F"], 4, 2, 2, 0, False),  # speechft: four substitutions
]

# jiwer, tests/test_measures.py (cases from "From WER and RIL to MER and WIL"): (reference,
# hypothesis, word error rate).
JIWER_CASES = [
    ("This is a test", "This is a test", 0.0),
    ("This is a test", "", 1.0),
    ("This is a test", "This test", 0.5),
    ("i am a short ground truth", "i am a considerably longer and very much incorrect hypothesis", 7 / 6),
    ("X", "X", 0.0),
    ("X", "X X Y Y", 3.0),
    ("X Y X", "X Z", 2 / 3),
    ("X", "Y", 1.0),
    ("X", "Y Z", 2.0),
]


@pytest.mark.parametrize(("reference", "hypothesis", "total"), KALDI_DISTANCE_CASES)
def test_kaldi_edit_distance(reference, hypothesis, total):
    assert counts(reference, hypothesis).errors == total
    assert counts(hypothesis, reference).errors == total


@pytest.mark.parametrize(("reference", "hypothesis", "insertions", "deletions", "substitutions"), KALDI_COUNT_CASES)
def test_kaldi_counts(reference, hypothesis, insertions, deletions, substitutions):
    result = counts(reference, hypothesis)
    assert (result.insertions, result.deletions, result.substitutions) == (insertions, deletions, substitutions)


def test_kaldi_random_invariants():
    # Kaldi's randomized check: ins + del + sub is the cost, del - ins = len(ref) - len(hyp).
    generator = random.Random(0)
    for _ in range(1000):
        reference = [str(generator.randrange(4)) for _ in range(generator.randrange(3))]
        hypothesis = [str(generator.randrange(4)) for _ in range(generator.randrange(11))]
        result = counts(reference, hypothesis)
        assert result.errors == _distance(reference, hypothesis)
        assert result.deletions - result.insertions == len(reference) - len(hypothesis)
        assert result.reference_length == len(reference)


@pytest.mark.parametrize(("reference", "hypothesis", "total", "insertions", "deletions", "substitutions", "same_counts"), KALDIALIGN_CASES)
def test_kaldialign_cases(reference, hypothesis, total, insertions, deletions, substitutions, same_counts):
    result = counts(reference, hypothesis)
    assert result.errors == total
    if same_counts:
        assert (result.insertions, result.deletions, result.substitutions) == (insertions, deletions, substitutions)


@pytest.mark.parametrize(("reference", "hypothesis", "rate"), JIWER_CASES)
def test_jiwer_cases(reference, hypothesis, rate):
    assert counts(reference.split(), hypothesis.split()).error_rate == pytest.approx(rate)


def test_align_columns():
    # Traced back from the end, the substitution is taken before the insertion, so the insertion
    # lands first.
    assert align(["a", "b", "c"], ["a", "s", "x", "c"]) == [
        AlignedPair("equal", "a", "a"),
        AlignedPair("insert", "", "s"),
        AlignedPair("replace", "b", "x"),
        AlignedPair("equal", "c", "c"),
    ]
    assert align(["a", "b"], ["b", "c"]) == [AlignedPair("replace", "a", "b"), AlignedPair("replace", "b", "c")]
    assert align([], ["x"]) == [AlignedPair("insert", "", "x")]
    assert align(["x"], []) == [AlignedPair("delete", "x", "")]


def _distance(reference, hypothesis) -> int:
    previous = list(range(len(hypothesis) + 1))
    for row, token in enumerate(reference, start=1):
        current = [row]
        for column, other in enumerate(hypothesis, start=1):
            current.append(min(previous[column] + 1, current[-1] + 1, previous[column - 1] + (token != other)))
        previous = current
    return previous[-1]


def _documented_alignment(reference, hypothesis):
    """The tie-breaking rule of speechft.scoring.align, written out as a plain dynamic programme."""
    prefix = 0
    while prefix < min(len(reference), len(hypothesis)) and reference[prefix] == hypothesis[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(reference), len(hypothesis)) - prefix and reference[-1 - suffix] == hypothesis[-1 - suffix]:
        suffix += 1
    middle_reference = reference[prefix : len(reference) - suffix]
    middle_hypothesis = hypothesis[prefix : len(hypothesis) - suffix]
    rows, columns = len(middle_reference), len(middle_hypothesis)
    cost = [[0] * (columns + 1) for _ in range(rows + 1)]
    for row in range(rows + 1):
        for column in range(columns + 1):
            if row == 0 or column == 0:
                cost[row][column] = row + column
            else:
                cost[row][column] = min(
                    cost[row - 1][column] + 1,
                    cost[row][column - 1] + 1,
                    cost[row - 1][column - 1] + (middle_reference[row - 1] != middle_hypothesis[column - 1]),
                )
    edits = []
    row, column = rows, columns
    while row or column:
        mismatch = row and column and middle_reference[row - 1] != middle_hypothesis[column - 1]
        if row and cost[row][column] == cost[row - 1][column] + 1:
            edits.append(("delete", prefix + row - 1, prefix + column))
            row -= 1
        elif mismatch and cost[row][column] == cost[row - 1][column - 1] + 1:
            edits.append(("replace", prefix + row - 1, prefix + column - 1))
            row -= 1
            column -= 1
        elif column and cost[row][column] == cost[row][column - 1] + 1:
            edits.append(("insert", prefix + row, prefix + column - 1))
            column -= 1
        else:  # a match
            row -= 1
            column -= 1
    return edits[::-1]


@pytest.mark.parametrize("alphabet", ["ab", "abc", "aab", "abcdef"])
def test_tie_breaking_follows_the_documented_rule(alphabet):
    generator = random.Random(alphabet)
    for _ in range(3000):
        reference = [generator.choice(alphabet) for _ in range(generator.randrange(12))]
        hypothesis = [generator.choice(alphabet) for _ in range(generator.randrange(12))]
        expected = _documented_alignment(reference, hypothesis)
        assert edit_operations(reference, hypothesis) == expected
        # The one-character-per-token string form aligns the same way.
        assert edit_operations("".join(reference), "".join(hypothesis)) == expected


def test_aligned_lines_pad_by_display_width():
    reference, hypothesis = ["HELLO", "WORLD", "中"], ["HELLO", "WORD", "X", "中", "国"]
    edits = edit_operations(reference, hypothesis)
    assert aligned_lines(reference, hypothesis, edits) == ("HELLO      WORLD 中   ", "HELLO WORD X     中 国")
    # One-character tokens take the string path and give the same layout.
    assert aligned_lines("今天好", "今x天", edit_operations("今天好", "今x天")) == aligned_lines(
        list("今天好"), list("今x天"), edit_operations(list("今天好"), list("今x天"))
    )


def test_counts_rates_and_texts():
    counts_value = Counts(correct=7, substitutions=1, deletions=0, insertions=0)
    assert counts_value.compute_wer_text() == "12.50 % N=8 Cor=7 Sub=1 Del=0 Ins=0"
    assert Counts(1175, 40, 19, 6).kaldi_text() == "%WER 5.27 [ 65 / 1234, 6 ins, 19 del, 40 sub ]"
    assert Counts(0, 0, 0, 2).error_rate == 1.0  # empty reference, something inserted: wrong
    assert Counts().error_rate == 0.0
    assert Counts(1, 2, 3, 4) + Counts(1, 1, 1, 1) == Counts(2, 3, 4, 5)


def test_aligned_lines_many_matches_aligned_lines():
    # The corpus-at-once layout of one-character tokens must equal the per-token layout, for
    # narrow and wide characters, gaps at either end and empty lines.
    generator = random.Random(5)
    alphabet = "AB中国Ｚé"
    alignments = []
    expected = []
    for _ in range(500):
        reference = "".join(generator.choice(alphabet) for _ in range(generator.randrange(7)))
        hypothesis = "".join(generator.choice(alphabet) for _ in range(generator.randrange(7)))
        edits = edit_operations(reference, hypothesis)
        alignments.append((reference, hypothesis, edits))
        expected.append(aligned_lines(list(reference), list(hypothesis), edit_operations(list(reference), list(hypothesis))))
    alignments.append((["HELLO"], ["HELO", "中"], edit_operations(["HELLO"], ["HELO", "中"])))
    expected.append(aligned_lines(*alignments[-1]))
    assert aligned_lines_many(alignments) == expected
    assert [aligned_lines(*alignment) for alignment in alignments] == expected
