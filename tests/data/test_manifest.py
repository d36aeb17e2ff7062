"""The ChatML jsonl manifest: what a line must hold, what is skipped and why, `--train FILE:WEIGHT`,
the length limits and the hours counted without opening audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from speech_fixtures import chatml_line, make_corpus, write_jsonl

from speechft.data.manifest import TrainSource, Utterance, filter_lengths, hours_of, parse_line, read_manifest
from speechft.errors import InputError


def test_train_source_weights() -> None:
    assert TrainSource.parse("a.jsonl") == TrainSource(Path("a.jsonl"), 1.0)
    assert TrainSource.parse("b.jsonl:0.2") == TrainSource(Path("b.jsonl"), 0.2)
    assert TrainSource.parse("/x:y/c.jsonl") == TrainSource(Path("/x:y/c.jsonl"), 1.0)
    with pytest.raises(InputError, match="must be > 0"):
        TrainSource.parse("d.jsonl:0")


def test_user_turn_without_bang_is_rejected(tmp_path: Path) -> None:
    good = chatml_line("good", tmp_path / "a.wav", "hi", seconds=1.0)
    bad = chatml_line("nobang", tmp_path / "a.wav", "hi", bang=False, seconds=1.0)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{not json\n", encoding="utf-8")
    utterances, skipped = read_manifest(path)
    assert [u.key for u in utterances] == ["good"]
    assert skipped[0].key == "nobang" and "'!'" in skipped[0].reason and skipped[0].where.endswith(":2")
    assert "not valid JSON" in skipped[1].reason
    assert isinstance(parse_line(json.dumps(good), "f:1", "line-1"), type(utterances[0]))
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="no usable lines"):
        read_manifest(path)


def test_a_line_splits_into_prompt_audio_and_transcript(tmp_path: Path) -> None:
    line = chatml_line("k1", tmp_path / "a.wav", "你好", prompt="语音转写：", seconds=1.0)
    parsed = parse_line(json.dumps(line, ensure_ascii=False), "m.jsonl:7", "line-7")
    assert isinstance(parsed, Utterance)
    assert (parsed.key, parsed.audio, parsed.prompt, parsed.suffix, parsed.text) == ("k1", str(tmp_path / "a.wav"), "语音转写：", "", "你好")
    assert (parsed.speech_frames, parsed.text_tokens, parsed.where) == (98, 2, "m.jsonl:7")
    assert parsed.batch_tokens == 100 and parsed.seconds == pytest.approx(0.98)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda line: line.pop("messages"), "no `messages` list"),
        (lambda line: line["messages"].reverse(), "messages must be system, user, assistant"),
        (lambda line: line["messages"][1].update(content="no audio here"), "no <|startofspeech|>"),
        (lambda line: line["messages"][2].update(content="  "), "empty transcript"),
        (lambda line: line.update(speech_length="long"), "not integers"),
    ],
)
def test_unusable_lines_name_their_problem(tmp_path: Path, change, reason: str) -> None:
    line = chatml_line("k1", tmp_path / "a.wav", "hi", seconds=1.0)
    change(line)
    skipped = parse_line(json.dumps(line), "m.jsonl:3", "line-3")
    assert not isinstance(skipped, Utterance)
    assert reason in skipped.reason and skipped.where == "m.jsonl:3"


def test_missing_lengths_come_from_the_header_and_the_tokenizer(tmp_path: Path) -> None:
    (line,) = make_corpus(tmp_path / "wav", 1)
    frames = line.pop("speech_length")
    line.pop("text_length")
    path = write_jsonl(tmp_path / "m.jsonl", [line])
    with pytest.raises(InputError, match="no text_length"):
        read_manifest(path)

    class Words:
        def tokenize(self, text: str) -> list[str]:
            return text.split()

    (utterance,), skipped = read_manifest(path, tokenizer=Words())
    assert not skipped and utterance.speech_frames == frames and utterance.text_tokens == 2


def test_length_limits_keep_order_and_say_which_limit(tmp_path: Path) -> None:
    def utterance(key: str, frames: int, tokens: int) -> Utterance:
        return Utterance(key, "a.wav", "s", "p", "", "t", frames, tokens, f"m.jsonl:{key}")

    kept, skipped = filter_lengths(
        [utterance("ok", 500, 10), utterance("long", 3495, 10), utterance("short", 9, 1), utterance("edge", 3490, 10)],
        max_sample_tokens=3500,
        min_speech_frames=10,
    )
    assert [u.key for u in kept] == ["ok", "edge"]
    assert [(s.key, s.where) for s in skipped] == [("long", "m.jsonl:long"), ("short", "m.jsonl:short")]
    assert "3505 tokens > data.max_sample_tokens 3500" in skipped[0].reason
    assert "9 fbank frames < data.min_speech_frames 10" in skipped[1].reason


def test_hours_count_speech_length_without_opening_audio(tmp_path: Path) -> None:
    lines = [chatml_line(f"k{index}", tmp_path / "absent.wav", "hi") for index in range(3)]
    for line, frames in zip(lines, (180_000, 90_000, 90_000)):
        line["speech_length"] = frames
    first = write_jsonl(tmp_path / "a.jsonl", lines[:2])
    second = write_jsonl(tmp_path / "b.jsonl", lines[2:])
    assert hours_of([first, second]) == pytest.approx(1.0)
    with pytest.raises(InputError, match="missing.jsonl: cannot read"):
        hours_of([tmp_path / "missing.jsonl"])
