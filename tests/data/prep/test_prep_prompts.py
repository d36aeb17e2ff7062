"""The prompt policy: the upstream prompt table, the guide's per-utterance rule, the sidecar."""

from __future__ import annotations

import json

import pytest

from speechft.data.prompts import PromptPolicy, PromptSidecar, has_written_form, read_sidecar, sidecar_path_for
from speechft.errors import ConfigError, InputError


def test_prompt_table_matches_upstream() -> None:
    assert PromptPolicy().prompt(True) == "语音转写："
    assert PromptPolicy().prompt(False) == "语音转写，不进行文本规整："
    assert PromptPolicy(language="en").prompt(True) == "语音转写成英文："
    assert PromptPolicy(language="中文").prompt(True) == "语音转写成中文："
    assert PromptPolicy(language="en").prompt(False) == "语音转写成英文，不进行文本规整："
    assert PromptPolicy(style="en").prompt(True) == "Speech transcription:"
    assert PromptPolicy(style="en").prompt(False) == "Speech transcription without text normalization:"
    assert PromptPolicy(style="en", language="zh").prompt(True) == "Transcribe speech into Chinese:"
    assert PromptPolicy(override="转写：").prompt(False) == "转写："


@pytest.mark.parametrize(
    ("transcript", "written"),
    [
        ("甚至出现交易几乎停滞的情况", False),
        ("hello world", False),
        ("今天是2024年", True),
        ("你好，世界", True),
        ("hello world.", True),
        ("I don't know", True),
        ("数字１２", True),
        ("百分之五", False),
    ],
)
def test_written_form_rule(transcript: str, written: bool) -> None:
    assert has_written_form(transcript) is written


def test_itn_modes() -> None:
    plain, punctuated = "你好世界", "你好，世界。"
    auto = PromptPolicy(itn="auto")
    assert auto.prompt_for(plain) == "语音转写，不进行文本规整："
    assert auto.prompt_for(punctuated) == "语音转写："
    assert PromptPolicy(itn="on").prompt_for(plain) == "语音转写："
    assert PromptPolicy(itn="off").prompt_for(punctuated) == "语音转写，不进行文本规整："
    assert PromptPolicy(itn="off", override="X:").prompt_for(plain) == "X:"


def test_bad_policy_values() -> None:
    with pytest.raises(ConfigError, match="itn"):
        PromptPolicy(itn="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="style"):
        PromptPolicy(style="fr")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        PromptPolicy.from_json({"itn": "on", "lang": "en"})


def test_sidecar_round_trip_and_decode_prompt(tmp_path) -> None:
    policy = PromptPolicy(language="en", itn="auto")
    sidecar = PromptSidecar(policy, {"语音转写成英文，不进行文本规整：": 7, "语音转写成英文：": 3})
    jsonl = tmp_path / "train.jsonl"
    path = sidecar_path_for(jsonl)
    assert path.name == "train.prompt.json"
    path.write_text(json.dumps(sidecar.to_json(), ensure_ascii=False), encoding="utf-8")
    back = read_sidecar(jsonl)
    assert back == sidecar
    assert back.decode_prompt == "语音转写成英文，不进行文本规整："
    assert PromptSidecar(PromptPolicy(itn="on")).decode_prompt == "语音转写："
    assert PromptSidecar(PromptPolicy(itn="auto"), {"a": 1, "语音转写：": 1}).decode_prompt == "语音转写："
    with pytest.raises(InputError, match="not found"):
        read_sidecar(tmp_path / "other.jsonl")
