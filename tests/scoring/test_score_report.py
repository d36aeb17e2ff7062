"""File scoring, the compute-wer report layout, per-class counts and system comparison."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from speechft.errors import InputError, UsageError
from speechft.scoring.align import Counts
from speechft.scoring.compare import compare
from speechft.scoring.report import read_transcripts, score_transcripts, write_compute_wer

DATA = Path(__file__).resolve().parents[1] / "data" / "score"


def score_files(reference: Path, hypothesis: Path):  # noqa: ANN201
    return score_transcripts(read_transcripts(reference, what="reference"), read_transcripts(hypothesis, what="hypothesis"), name=str(hypothesis))


def _report(score) -> str:
    stream = io.StringIO()
    write_compute_wer(score, stream)
    return stream.getvalue()


def _split_class_lines(text: str) -> tuple[list[str], set[str]]:
    lines = text.splitlines()
    classes = {line for line in lines if line.split(" ")[0] in {"Chinese", "English", "Japanese", "Number", "Other"}}
    return [line for line in lines if line not in classes], classes


def test_report_matches_compute_wer():
    """Byte for byte what the PyPI compute-wer writes, but for the order of the class lines."""
    expected = (DATA / "compute-wer.txt").read_text(encoding="utf-8")
    produced = _report(score_files(DATA / "ref.txt", DATA / "hyp.txt"))
    assert _split_class_lines(produced) == _split_class_lines(expected)
    assert produced.endswith("\n") and expected.endswith("\n")


def test_report_trailer():
    produced = _report(score_files(DATA / "ref.txt", DATA / "hyp.txt")).splitlines()
    start = len(produced) - 1 - produced[::-1].index("=" * 75, 1)
    trailer = produced[start:]
    assert trailer[0] == trailer[-1] == "=" * 75
    assert trailer[1] == "Overall -> 28.21 % N=39 Cor=29 Sub=9 Del=1 Ins=1"
    assert [line.split(" ")[0] for line in trailer[2:-2]] == ["Chinese", "English", "Japanese", "Number", "Other"]
    assert trailer[-2] == "SER -> 83.33 % N=6 Cor=1 Err=5 ML=1 MH=0"


def test_chinese_only_trailer_fits_tail_8():
    score = score_transcripts({"a": "今天 天气", "b": "很好"}, {"a": "今天 天 汽", "b": "很好"})
    tail = _report(score).splitlines()[-8:]
    assert tail[-5:] == [
        "=" * 75,
        "Overall -> 16.67 % N=6 Cor=5 Sub=1 Del=0 Ins=0",
        "Chinese -> 16.67 % N=6 Cor=5 Sub=1 Del=0 Ins=0",
        "SER -> 50.00 % N=2 Cor=1 Err=1 ML=0 MH=0",
        "=" * 75,
    ]


def test_reference_order_and_missing_and_extra_keys():
    references = {"b": "一 二", "a": "三", "c": "四 五 六"}
    hypotheses = {"a": "三", "b": "一 二", "z": "多"}
    score = score_transcripts(references, hypotheses)
    assert [utterance.key for utterance in score.utterances] == ["b", "a", "c"]
    assert score.missing_keys == ("c",)
    assert score.extra_keys == ("z",)
    assert score.utterances[2].missing
    assert score.utterances[2].counts == Counts(0, 0, 3, 0)  # all deletions
    assert score.overall == Counts(3, 0, 3, 0)
    assert "SER -> 33.33 % N=3 Cor=2 Err=1 ML=1 MH=1" in _report(score)


def test_empty_reference_with_hypothesis_is_an_error():
    score = score_transcripts({"a": "", "b": "好"}, {"a": "多 余", "b": "好"})
    assert score.utterances[0].counts == Counts(0, 0, 0, 2)
    assert score.sentences_wrong == 1
    assert score.overall == Counts(1, 0, 0, 2)
    report = _report(score)
    assert "WER: 100.00 % N=0 Cor=0 Sub=0 Del=0 Ins=2" in report
    assert "SER -> 50.00 % N=2 Cor=1 Err=1" in report


def test_empty_reference_and_hypothesis_is_correct():
    score = score_transcripts({"a": ""}, {"a": "<|zh|>"})
    assert score.overall == Counts() and score.sentences_wrong == 0


def test_tags_are_removed():
    score = score_transcripts({"a": "你好"}, {"a": "<|zh|><|NEUTRAL|><|Speech|>你好"})
    assert score.overall == Counts(2, 0, 0, 0)


def test_class_counts_sum_to_overall():
    score = score_files(DATA / "ref.txt", DATA / "hyp.txt")
    total = Counts()
    for counts in score.by_class.values():
        total = total + counts
    assert total == score.overall


def test_by_character():
    score = score_transcripts({"a": "hello 3"}, {"a": "helo 3"}, by_character=True)
    assert score.overall == Counts(5, 0, 1, 0)
    assert score.by_class["English"] == Counts(4, 0, 1, 0)


def test_worst_ranks_by_errors_then_rate_then_order():
    score = score_transcripts({"a": "一 二 三 四", "b": "一", "c": "一 二", "d": "一"}, {"a": "一", "b": "二", "c": "三 四", "d": "一"})
    assert [utterance.key for utterance in score.worst(10)] == ["a", "c", "b"]


def test_read_transcripts_errors(tmp_path):
    duplicate = tmp_path / "dup.txt"
    duplicate.write_text("a 1\nb 2\na 3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.txt:3: duplicate key 'a'.*line 1"):
        read_transcripts(duplicate, what="reference")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("a 好\n".encode() + b"b \xff\n")
    with pytest.raises(InputError, match=r"bad.txt:2: invalid UTF-8"):
        read_transcripts(bad, what="reference")
    with pytest.raises(InputError, match="not found"):
        read_transcripts(tmp_path / "none.txt", what="reference")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("\ufeffa 你 好 \r\n\r\nb\r\n".encode())
    assert read_transcripts(crlf, what="reference") == {"a": "你 好", "b": ""}


def _pair(errors_before: list[int], errors_after: list[int]):
    references = {f"u{index}": "一 二 三 四" for index in range(len(errors_before))}
    before = {key: "一 二 三 四"[: 8 - 2 * errors] for key, errors in zip(references, errors_before)}
    after = {key: "一 二 三 四"[: 8 - 2 * errors] for key, errors in zip(references, errors_after)}
    return score_transcripts(references, before, name="base"), score_transcripts(references, after, name="tuned")


def test_compare_is_reproducible_and_paired():
    baseline, candidate = _pair([2, 1, 2, 0, 1, 2, 1, 1], [1, 0, 1, 0, 1, 1, 0, 0])
    first = compare(baseline, candidate, resamples=500, seed=7)
    assert first == compare(baseline, candidate, resamples=500, seed=7)
    assert first != compare(baseline, candidate, resamples=500, seed=8)
    assert first.baseline_rate == pytest.approx(10 / 32)
    assert first.candidate_rate == pytest.approx(4 / 32)
    assert first.absolute_change == pytest.approx(-6 / 32)
    assert first.relative_change == pytest.approx(-0.6)
    assert first.interval_low <= first.absolute_change <= first.interval_high
    assert first.interval_high < 0 and first.significant  # the candidate never does worse


def test_compare_identical_systems_has_a_zero_interval():
    baseline, _ = _pair([1, 2, 0], [1, 2, 0])
    result = compare(baseline, baseline, resamples=100, seed=0)
    assert (result.interval_low, result.interval_high) == (0.0, 0.0)
    assert not result.significant


def test_compare_rejects_other_references():
    one = score_transcripts({"a": "一"}, {"a": "一"})
    other = score_transcripts({"b": "一"}, {"b": "一"})
    with pytest.raises(UsageError):
        compare(one, other)


def test_mixed_scripts_match_compute_wer():
    """Tokens, alignments, padding and class counts agree with compute-wer on many scripts."""
    expected = (DATA / "mixed-compute-wer.txt").read_text(encoding="utf-8")
    produced = _report(score_files(DATA / "mixed-ref.txt", DATA / "mixed-hyp.txt"))
    assert _split_class_lines(produced) == _split_class_lines(expected)
