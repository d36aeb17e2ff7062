"""Decode bookkeeping: order, batching, long audio, errors and resume (model-independent parts).

The transcriber here is a deterministic function of the waveform so the bookkeeping can be checked
exactly; decoding with the real model is covered in the model/decode tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from speechft.decode.inputs import read_jsonl_items, read_scp_items
from speechft.decode.run import DecodeOptions, decode_items, join_texts, read_finished
from speechft.errors import InputError

RATE = 16000


def load(path: str) -> np.ndarray:
    waveform, rate = soundfile.read(path, dtype="float32")
    assert rate == RATE
    return waveform


class LengthTranscriber:
    """Texts that say how long each segment was; records every batch it saw."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.batches: list[int] = []
        self.fail_after = fail_after

    def transcribe(self, waveforms, prompts):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches.append(len(waveforms))
        return [f"{prompt}{len(w) // 160}" for w, prompt in zip(waveforms, prompts)]


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    scp = tmp_path / "wav.scp"
    lines = []
    for index in range(23):
        path = tmp_path / f"u{index:02d}.wav"
        soundfile.write(path, rng.normal(size=RATE // 10 * (1 + index % 7)).astype(np.float32) * 0.1, RATE)
        lines.append(f"u{index:02d} {path}")
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return scp


def test_output_in_input_order_with_batches(corpus, tmp_path):
    items = read_scp_items(corpus, prompt="P")
    transcriber = LengthTranscriber()
    output = tmp_path / "out" / "hyp.txt"
    summary = decode_items(items, transcriber, output, load, DecodeOptions(batch_size=4))
    rows = [line.split("\t") for line in output.read_text(encoding="utf-8").splitlines()]
    assert [key for key, _ in rows] == [item.key for item in items]
    assert all(text == f"P{10 * (1 + int(key[1:]) % 7)}" for key, text in rows)
    assert max(transcriber.batches) == 4 and sum(transcriber.batches) == 23
    assert summary.decoded == 23 and not summary.errors
    assert summary.audio_seconds == pytest.approx(sum(0.1 * (1 + i % 7) for i in range(23)))


def test_batch_seconds_bounds_padded_audio(corpus, tmp_path):
    items = read_scp_items(corpus, prompt="")
    transcriber = LengthTranscriber()
    decode_items(items, transcriber, tmp_path / "hyp.txt", load, DecodeOptions(batch_size=64, batch_seconds=1.4))
    # Longest clip is 0.7 s: at most two of them fit in 1.4 padded seconds.
    assert transcriber.batches[0] == 2


def test_bad_audio_gets_empty_text_and_error_line(corpus, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not a wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), RATE)
    with open(corpus, "a", encoding="utf-8") as handle:
        handle.write(f"missing {tmp_path / 'nope.wav'}\nbroken {tmp_path / 'broken.wav'}\nempty {tmp_path / 'empty.wav'}\n")
    items = read_scp_items(corpus, prompt="")
    output = tmp_path / "hyp.txt"
    summary = decode_items(items, LengthTranscriber(), output, load, DecodeOptions(batch_size=8))
    assert [key for key, _ in summary.errors] == ["missing", "broken", "empty"]
    results = read_finished(output)
    assert results["missing"] == results["broken"] == results["empty"] == ""
    assert len(results) == 26
    errors = (tmp_path / "decode_errors.tsv").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in errors] == ["missing", "broken", "empty"]
    assert "empty audio" in errors[2]


def test_crash_then_resume_has_no_duplicates_or_gaps(corpus, tmp_path):
    items = read_scp_items(corpus, prompt="")
    output = tmp_path / "hyp.txt"
    options = DecodeOptions(batch_size=4, chunk_batches=2)
    with pytest.raises(RuntimeError):
        decode_items(items, LengthTranscriber(fail_after=3), output, load, options)
    partial = read_finished(output)
    assert 0 < len(partial) < 23
    with open(output, "a", encoding="utf-8") as handle:
        handle.write("u22\tcut off mid-wri")  # a line the crash left without its newline
    transcriber = LengthTranscriber()
    summary = decode_items(items, transcriber, output, load, DecodeOptions(batch_size=4, resume=True))
    assert summary.resumed == len(partial)
    assert sum(transcriber.batches) == 23 - len(partial)
    keys = [line.split("\t")[0] for line in output.read_text(encoding="utf-8").splitlines()]
    assert keys == [item.key for item in items]


def test_long_audio_is_split_and_joined(tmp_path):
    rng = np.random.default_rng(1)
    audio = rng.normal(size=RATE * 70).astype(np.float32) * 0.1
    audio[RATE * 25 : RATE * 26] *= 1e-4
    audio[RATE * 50 : RATE * 51] *= 1e-4
    path = tmp_path / "long.wav"
    soundfile.write(path, audio, RATE)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"long {path}\n", encoding="utf-8")
    transcriber = LengthTranscriber()
    output = tmp_path / "hyp.txt"
    decode_items(read_scp_items(scp, prompt="w"), transcriber, output, load, DecodeOptions(batch_size=1))
    assert len(transcriber.batches) == 3
    text = read_finished(output)["long"]
    assert text.count("w") == 3


def test_jsonl_items_use_their_own_prompt(tmp_path):
    jsonl = tmp_path / "val.jsonl"
    record = {
        "key": "k1",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "语音转写，不进行文本规整：<|startofspeech|>!/data/a.wav<|endofspeech|>"},
            {"role": "assistant", "content": "你好"},
        ],
    }
    jsonl.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    (item,) = read_jsonl_items(jsonl)
    assert (item.key, item.source, item.prompt) == ("k1", "/data/a.wav", "语音转写，不进行文本规整：")


def test_scp_errors_name_the_line(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("a /x.wav\nb\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"wav.scp:2: key 'b' has no audio path"):
        read_scp_items(scp, prompt="")
    scp.write_text("a /x.wav\na /y.wav\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"wav.scp:2: duplicate key 'a'"):
        read_scp_items(scp, prompt="")


def test_join_texts():
    assert join_texts(["今天", "天气"]) == "今天天气"
    assert join_texts(["hello", "world"]) == "hello world"
    assert join_texts(["你好", "", "ok"]) == "你好ok"
