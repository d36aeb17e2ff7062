"""`speechft prep` on the command line: options reach the library, exit codes, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_fixtures import make_tokenizer, write_lines, write_wav
from typer.testing import CliRunner

from speechft.cli.app import app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    make_tokenizer(directory / "Qwen3-0.6B")
    return directory


@pytest.fixture()
def corpus(tmp_path) -> Path:
    write_wav(tmp_path / "a.wav", 1.0)
    write_wav(tmp_path / "b.wav", 2.0, sample_rate=8000)
    write_lines(tmp_path / "wav.scp", [f"a {tmp_path}/a.wav", f"b {tmp_path}/b.wav"])
    write_lines(tmp_path / "text", ["a 你好世界", "b 你好，世界。"])
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, ["prep", *args])


def test_prep_writes_outputs(corpus, model_dir) -> None:
    out = corpus / "data" / "train.jsonl"
    result = run(
        "--scp",
        str(corpus / "wav.scp"),
        "--text",
        str(corpus / "text"),
        "--out",
        str(out),
        "--model-dir",
        str(model_dir),
        "--language",
        "zh",
        "--itn",
        "on",
        "--jobs",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and "small-data" in result.output and "resampled" in result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["messages"][1]["content"][:8] for line in lines] == ["语音转写成中文：", "语音转写成中文："]
    sidecar = json.loads((corpus / "data" / "train.prompt.json").read_text(encoding="utf-8"))
    assert sidecar["policy"] == {"language": "zh", "itn": "on", "style": "zh", "override": None}
    summary = json.loads((corpus / "data" / "train.summary.json").read_text(encoding="utf-8"))
    assert summary["kept"] == 2 and summary["warnings"] == {"resampled": 1}
    assert (corpus / "data" / "train.rejects.tsv").read_text() == ""


def test_prep_prompt_override_and_val(corpus, model_dir) -> None:
    out = corpus / "train.jsonl"
    result = run(
        "--scp",
        str(corpus / "wav.scp"),
        "--text",
        str(corpus / "text"),
        "--out",
        str(out),
        "--tokenizer",
        str(model_dir / "Qwen3-0.6B"),
        "--prompt",
        "转写：",
        "--val-fraction",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines() + (corpus / "train.val.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("转写：<|startofspeech|>!" in line for line in lines)


def test_prep_too_many_rejects_exits_1(corpus, model_dir) -> None:
    write_lines(corpus / "text", ["a 你好世界"])
    result = run("--scp", str(corpus / "wav.scp"), "--text", str(corpus / "text"), "--out", str(corpus / "t.jsonl"), "--model-dir", str(model_dir))
    assert result.exit_code == 1
    assert "no_transcript" in result.output and "--max-reject-fraction" in result.output
    result = run(
        "--scp",
        str(corpus / "wav.scp"),
        "--text",
        str(corpus / "text"),
        "--out",
        str(corpus / "t.jsonl"),
        "--model-dir",
        str(model_dir),
        "--max-reject-fraction",
        "0.5",
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--itn", "maybe"], "itn must be one of"),
        (["--segments", "segments"], "--audio-out"),
        (["--tokenizer", "x"], "not both"),
    ],
)
def test_prep_usage_errors(corpus, model_dir, extra: list[str], message: str) -> None:
    result = run("--scp", str(corpus / "wav.scp"), "--text", str(corpus / "text"), "--out", str(corpus / "t.jsonl"), "--model-dir", str(model_dir), *extra)
    assert result.exit_code == 2
    assert message in result.output


def test_prep_missing_inputs(corpus, model_dir) -> None:
    result = run("--scp", str(corpus / "absent.scp"), "--text", str(corpus / "text"), "--out", str(corpus / "t.jsonl"), "--model-dir", str(model_dir))
    assert result.exit_code == 1 and "absent.scp: file not found" in result.output
    result = run("--scp", str(corpus / "wav.scp"), "--text", str(corpus / "text"), "--out", str(corpus / "t.jsonl"), "--model-dir", str(corpus / "no-model"))
    assert result.exit_code == 1 and "tokenizer directory not found" in result.output


def test_prep_help_lists_options() -> None:
    result = CliRunner().invoke(app, ["prep", "--help"])
    assert result.exit_code == 0
    for option in ("--scp", "--text", "--out", "--itn", "--segments", "--val-fraction", "--max-reject-fraction"):
        assert option in result.output
