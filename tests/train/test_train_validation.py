"""The validation CER that ranks checkpoints is the number `speechft normalize` + `speechft score` report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCES = {
    "zh-number": "今天是2023年5月1日，花了35.5元。",
    "zh-wrong": "甚至出现交易几乎停滞的情况",
    "en-word": "Hello world, it's fine",
    "mixed": "我用 Python 写了 3 个脚本",
    "empty-hyp": "天气不错",
    "case": "The CAT sat",
}
HYPOTHESES = {
    "zh-number": "今天是二零二三年五月一日花了三十五点五元",
    "zh-wrong": "甚至出现交易几乎停止的情况吧",
    "en-word": "hello word its fine",
    "mixed": "我用 python 写了三个脚本",
    "empty-hyp": "",
    "case": "the cat sat down",
}


def _score_with_the_cli(runner, tmp_path: Path, references: dict[str, str], hypotheses: dict[str, str]) -> float:  # noqa: ANN001
    from speechft.cli.app import app

    for name, texts in (("ref", references), ("hyp", hypotheses)):
        (tmp_path / f"{name}.txt").write_text("".join(f"{key} {text}\n" for key, text in texts.items()), encoding="utf-8")
        result = runner.invoke(app, ["normalize", str(tmp_path / f"{name}.txt"), str(tmp_path / f"{name}.norm")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", str(tmp_path / "ref.norm"), str(tmp_path / "hyp.norm"), "--json", str(tmp_path / "score.json")])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "score.json").read_text(encoding="utf-8"))["systems"][0]["overall"]["error_rate"]


def test_validation_cer_equals_what_speechft_score_reports(runner, tmp_path: Path) -> None:  # noqa: ANN001
    from speechft.train.validation import validation_cer

    keys = list(REFERENCES)
    ours = validation_cer([REFERENCES[key] for key in keys], [HYPOTHESES[key] for key in keys])
    reported = _score_with_the_cli(runner, tmp_path, REFERENCES, HYPOTHESES)
    assert ours == pytest.approx(reported, abs=1e-12)
    assert 0 < ours < 1


@pytest.mark.parametrize(
    "reference, hypothesis, expected",
    [
        ("今天是2023年", "今天是二零二三年", 0.0),  # numbers are normalised on both sides, as the guide does
        ("hello world", "hello word", 0.5),  # Latin script is scored per word, not per letter
        ("Hello, World!", "hello world", 0.0),  # punctuation and case do not count
        ("甚至出现交易", "甚至出现交通", 1 / 6),  # CJK per character
    ],
)
def test_each_utterance_scores_as_score_does(runner, tmp_path: Path, reference: str, hypothesis: str, expected: float) -> None:  # noqa: ANN001
    from speechft.train.validation import validation_cer

    assert validation_cer([reference], [hypothesis]) == pytest.approx(expected)
    assert _score_with_the_cli(runner, tmp_path, {"u": reference}, {"u": hypothesis}) == pytest.approx(expected)
