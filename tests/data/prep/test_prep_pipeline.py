"""`prepare`: every reject reason and warning, the exact line format, order, splits, segments, URLs."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import soundfile
from prep_fixtures import TOKENIZER_CORPUS, make_tokenizer, serve_directory, write_lines, write_wav

from speechft.data.manifest import chatml_line
from speechft.data.prep.options import PrepOptions
from speechft.data.prep.pipeline import prepare
from speechft.data.prep.split import is_validation
from speechft.data.prep.summary import TooManyRejectsError
from speechft.data.prompts import PromptPolicy, read_sidecar
from speechft.data.tokens import load_token_counter
from speechft.errors import UsageError
from speechft.model.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_rejects(path: Path) -> dict[str, tuple[str, str]]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(len(row) == 3 for row in rows)
    return {key: (reason, detail) for key, reason, detail in rows}


def options(tmp_path: Path, tokenizer_dir: Path, **overrides) -> PrepOptions:
    values = dict(
        scp=tmp_path / "wav.scp",
        text=tmp_path / "text",
        out=tmp_path / "out" / "train.jsonl",
        tokenizer_dir=tokenizer_dir,
        jobs=1,
        max_reject_fraction=1.0,
        url_retries=0,
        url_timeout_s=5.0,
    )
    values.update(overrides)
    return PrepOptions(**values)


def test_every_reason_and_warning(tmp_path, tokenizer_dir) -> None:
    audio = tmp_path / "audio"
    write_wav(audio / "k01.wav", 1.0)
    write_wav(audio / "k02.wav", 1.0, sample_rate=8000)
    write_wav(audio / "k03.wav", 1.0, sample_rate=44100, channels=2)
    write_wav(audio / "k04.wav", 0.0)
    (audio / "k05.wav").write_bytes(write_wav(audio / "full.wav", 0.5).read_bytes()[:30])
    write_wav(audio / "k07a.wav", 1.0)
    write_wav(audio / "k08.wav", 1.0)
    write_wav(audio / "k14.wav", 0.05)
    write_wav(audio / "k15.wav", 4.0)
    write_wav(audio / "k16.wav", 1.0)
    write_wav(audio / "k09.wav", 1.0)
    write_wav(audio / "k10.wav", 1.0)
    write_wav(audio / "k11.wav", 1.0)
    with serve_directory(audio) as base:
        write_lines(
            tmp_path / "wav.scp",
            [
                f"k01 {audio}/k01.wav",
                f"k02 {audio}/k02.wav",
                f"k03 {audio}/k03.wav",
                f"k04 {audio}/k04.wav",
                f"k05 {audio}/k05.wav",
                f"k06 {audio}/k06.wav",
                f"k07 {audio}/k07a.wav",
                f"k07 {audio}/k07b.wav",
                f"k08 {audio}/k08.wav",
                f"k09 {audio}/k09.wav",
                f"k10 {audio}/k10.wav",
                f"k11 {audio}/k11.wav",
                "k12 /nowhere/k12.wav",
                f"k14 {audio}/k14.wav",
                f"k15 {audio}/k15.wav",
                f"k16 {audio}/k16.wav",
                "k17 sox in.wav -t wav - |",
                f"k18 {base}/absent.wav",
                "k19",
                f"k20 {base}/k01.wav",
            ],
        )
        write_lines(
            tmp_path / "text",
            [
                "k01 甚至出现交易几乎停滞的情况",
                "k02 hello world",
                "k03 你好，世界",
                "k04 a",
                "k05 b",
                "k06 c",
                "k07 d",
                "k08 repeated",
                "k08 repeated",
                "k09 ",
                b"k10 " + "坏的".encode("gbk"),
                "k11",
                "k13 no audio here",
                "k14 short",
                "k15 long",
                "k16 " + "the quick brown fox " * 10,
                "k17 e",
                "k18 f",
                "k19 g",
                "k20 served over http",
            ],
        )
        summary = prepare(options(tmp_path, tokenizer_dir, max_frames=300, max_tokens=40))

    expected_rejects = {
        "k04": "zero_length",
        "k05": "unreadable_audio",
        "k06": "file_missing",
        "k07": "duplicate_key",
        "k09": "empty_transcript",
        "k10": "bad_line",
        "k11": "bad_line",
        "k12": "no_transcript",
        "k13": "no_audio",
        "k14": "too_short",
        "k15": "too_long",
        "k16": "too_many_tokens",
        "k17": "unsupported_entry",
        "k18": "url_unreachable",
        "k19": "bad_line",
    }
    rejects = read_rejects(tmp_path / "out" / "train.rejects.tsv")
    assert {key: reason for key, (reason, _) in rejects.items()} == expected_rejects
    # wav.scp order, then keys only the text file has
    assert list(rejects) == sorted(set(rejects) - {"k13"}) + ["k13"]
    assert "text:11: invalid UTF-8" in rejects["k10"][1]
    assert "text:12: no whitespace" in rejects["k11"][1]
    assert "lines 7, 8" in rejects["k07"][1]
    assert "404" in rejects["k18"][1]

    lines = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [line["key"] for line in lines] == ["k01", "k02", "k03", "k08", "k20"]
    assert lines[-1]["messages"][1]["content"].endswith(f"!{base}/k01.wav<|endofspeech|>")

    assert summary.total_keys == 20
    assert summary.kept + summary.rejected_total == summary.total_keys
    assert summary.kept == summary.train == 5
    assert summary.rejected == {reason: list(expected_rejects.values()).count(reason) for reason in summary.rejected}
    assert set(summary.rejected) == set(expected_rejects.values())
    assert summary.warnings == {"resampled": 2, "downmixed": 1, "repeated_line": 1}
    assert summary.warning_examples["resampled"] == ["k02", "k03"]
    on_disk = json.loads((tmp_path / "out" / "train.summary.json").read_text(encoding="utf-8"))
    assert on_disk["kept"] + on_disk["rejected_total"] == on_disk["total_keys"] == 20
    assert on_disk["recommended_profile"] == "small-data"
    assert set(on_disk["duration_s"]) == {"p5", "p50", "p95", "max"}


def test_exact_line(tmp_path, tokenizer_dir) -> None:
    write_wav(tmp_path / "a.wav", 1.005)  # 16080 samples -> 99 fbank frames
    write_lines(tmp_path / "wav.scp", ["BAC009S0764W0121 a.wav"])
    write_lines(tmp_path / "text", ["BAC009S0764W0121 甚至出现交易几乎停滞的情况"])
    cwd = os.getcwd()
    os.chdir(tmp_path)  # wav.scp paths are relative to where prep runs, as in Kaldi
    try:
        prepare(options(tmp_path, tokenizer_dir))
    finally:
        os.chdir(cwd)
    text_length = len(load_tokenizer(tokenizer_dir).tokenize("甚至出现交易几乎停滞的情况"))
    expected = (
        '{"key": "BAC009S0764W0121", "messages": [{"role": "system", "content": "You are a helpful assistant."}, '
        '{"role": "user", "content": "语音转写，不进行文本规整：<|startofspeech|>!'
        + str(tmp_path / "a.wav")
        + '<|endofspeech|>"}, {"role": "assistant", "content": "甚至出现交易几乎停滞的情况"}], '
        f'"speech_length": 99, "text_length": {text_length}}}\n'
    )
    assert (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8") == expected
    sidecar = read_sidecar(tmp_path / "out" / "train.jsonl")
    assert sidecar.prompts_used == {"语音转写，不进行文本规整：": 1}
    assert sidecar.decode_prompt == "语音转写，不进行文本规整："


def test_prompt_rule_per_line(tmp_path, tokenizer_dir) -> None:
    write_wav(tmp_path / "a.wav", 1.0)
    write_lines(tmp_path / "wav.scp", [f"u{i} {tmp_path}/a.wav" for i in range(3)])
    write_lines(tmp_path / "text", ["u0 没有标点", "u1 有标点。", "u2 has 3 digits"])
    summary = prepare(options(tmp_path, tokenizer_dir, policy=PromptPolicy(language="en")))
    prompts = [line["messages"][1]["content"].split("<|startofspeech|>")[0] for line in read_jsonl(tmp_path / "out" / "train.jsonl")]
    assert prompts == ["语音转写成英文，不进行文本规整：", "语音转写成英文：", "语音转写成英文："]
    assert summary.prompts_used == {"语音转写成英文：": 2, "语音转写成英文，不进行文本规整：": 1}
    prepare(options(tmp_path, tokenizer_dir, policy=PromptPolicy(itn="on", style="en")))
    assert {line["messages"][1]["content"].split("<")[0] for line in read_jsonl(tmp_path / "out" / "train.jsonl")} == {"Speech transcription:"}


def test_order_preserved_across_workers_and_split(tmp_path, tokenizer_dir) -> None:
    keys = [f"spk{random.Random(index).randint(0, 99):02d}-utt{index:04d}" for index in range(300)]
    random.Random(1).shuffle(keys)
    write_wav(tmp_path / "short.wav", 0.3)
    for index, key in enumerate(keys[:30]):
        write_wav(tmp_path / "audio" / f"{key}.wav", 0.2 + index / 100, seed=index)
    locations = {key: (tmp_path / "audio" / f"{key}.wav" if index < 30 else tmp_path / "short.wav") for index, key in enumerate(keys)}
    # Every key its own path, so the workers really read 300 headers.
    for key, location in list(locations.items())[30:]:
        link = tmp_path / "audio" / f"{key}.wav"
        os.symlink(location, link)
        locations[key] = link
    write_lines(tmp_path / "wav.scp", [f"{key} {locations[key]}" for key in keys])
    write_lines(tmp_path / "text", [f"{key} {TOKENIZER_CORPUS[index % 5]}" for index, key in enumerate(reversed(keys))])
    serial = prepare(options(tmp_path, tokenizer_dir, jobs=1, out=tmp_path / "serial.jsonl"))
    parallel = prepare(options(tmp_path, tokenizer_dir, jobs=2, out=tmp_path / "parallel.jsonl"))
    assert (tmp_path / "serial.jsonl").read_bytes() == (tmp_path / "parallel.jsonl").read_bytes()
    assert [line["key"] for line in read_jsonl(tmp_path / "parallel.jsonl")] == keys
    assert serial.kept == parallel.kept == 300

    split = prepare(options(tmp_path, tokenizer_dir, jobs=2, val_fraction=0.2, val_out=tmp_path / "val.jsonl"))
    train_keys = [line["key"] for line in read_jsonl(tmp_path / "out" / "train.jsonl")]
    val_keys = [line["key"] for line in read_jsonl(tmp_path / "val.jsonl")]
    assert split.train + split.validation == split.kept == 300
    assert 30 <= len(val_keys) <= 90
    assert val_keys == [key for key in keys if is_validation(key, 0.2)]
    assert train_keys == [key for key in keys if not is_validation(key, 0.2)]
    assert sum(split.prompts_used.values()) == split.train
    assert not [name for name in os.listdir(tmp_path / "out") if ".tmp" in name]


def test_segments(tmp_path, tokenizer_dir) -> None:
    write_wav(tmp_path / "rec1.wav", 3.0, sample_rate=8000, channels=2)
    write_wav(tmp_path / "rec3.wav", 1.0)
    write_wav(tmp_path / "rec4.wav", 1.2)
    write_lines(tmp_path / "wav.scp", [f"rec1 {tmp_path}/rec1.wav", f"rec3 {tmp_path}/rec3.wav", f"rec4 {tmp_path}/rec4.wav"])
    write_lines(
        tmp_path / "segments",
        [
            "s1 rec1 0.0 1.0",
            "s2 rec1 1.0 2.5",
            "s3 rec1 2.9 4.0",
            "s4 rec2 0 1",
            "s5 rec1 a b",
            "s6 rec1 2.5 -1",
            "s7 rec4 0.2 1.2",
        ],
    )
    write_lines(tmp_path / "text", [f"s{index} 第{index}段" for index in range(1, 8)])
    run = options(tmp_path, tokenizer_dir, segments=tmp_path / "segments", audio_out=tmp_path / "cut", jobs=2)
    summary = prepare(run)
    rejects = read_rejects(tmp_path / "out" / "train.rejects.tsv")
    assert {key: reason for key, (reason, _) in rejects.items()} == {
        "s3": "bad_segment",
        "s4": "no_audio",
        "s5": "bad_line",
        "rec3": "no_segments",
    }
    lines = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [line["key"] for line in lines] == ["s1", "s2", "s6", "s7"]
    frames = {"s1": 16000, "s2": 24000, "s6": 8000, "s7": 16000}
    for line in lines:
        path = line["messages"][1]["content"].split("!")[1].split("<|endofspeech|>")[0]
        assert path == str(tmp_path / "cut" / f"{line['key']}.wav")
        info = soundfile.info(path)
        assert (info.frames, info.samplerate, info.channels) == (frames[line["key"]], 16000, 1)
        assert line["speech_length"] == (frames[line["key"]] // 16 - 25) // 10 + 1
    assert summary.total_keys == 8 and summary.kept + summary.rejected_total == 8
    before = (tmp_path / "cut" / "s1.wav").stat().st_mtime_ns
    prepare(run)  # re-run: finished segment files are kept as they are
    assert (tmp_path / "cut" / "s1.wav").stat().st_mtime_ns == before


def test_too_many_rejects_still_writes_everything(tmp_path, tokenizer_dir) -> None:
    write_wav(tmp_path / "a.wav", 1.0)
    write_lines(tmp_path / "wav.scp", [f"a {tmp_path}/a.wav", "b /missing.wav"])
    write_lines(tmp_path / "text", ["a 好", "b 坏"])
    with pytest.raises(TooManyRejectsError, match=r"1 of 2 utterances rejected \(50.0% > --max-reject-fraction 0.05\)") as caught:
        prepare(options(tmp_path, tokenizer_dir, max_reject_fraction=0.05))
    assert caught.value.summary.kept == 1
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 1
    assert (tmp_path / "out" / "train.summary.json").exists()


def test_option_checks(tmp_path, tokenizer_dir) -> None:
    with pytest.raises(UsageError, match="--audio-out"):
        prepare(options(tmp_path, tokenizer_dir, segments=tmp_path / "segments"))
    with pytest.raises(UsageError, match="val-fraction"):
        prepare(options(tmp_path, tokenizer_dir, val_fraction=1.5))


def test_token_counter_matches_tokenize(tmp_path) -> None:
    texts = [*TOKENIZER_CORPUS, "", " lead", "tab\there", "<|im_end|> special", "e\u0301 composed", "I'll 3.14 ok?"]
    direct = load_token_counter(make_tokenizer(tmp_path / "qwen"))
    fallback = load_token_counter(make_tokenizer(tmp_path / "plain", qwen_pipeline=False))
    assert (direct.source, fallback.source) == ("tokenizer.json", "transformers")
    for directory, counter in ((tmp_path / "qwen", direct), (tmp_path / "plain", fallback)):
        tokenizer = load_tokenizer(directory)
        assert counter.count(texts) == [len(tokenizer.tokenize(text)) for text in texts]


def test_chatml_line_keeps_non_ascii() -> None:
    line = chatml_line("k", "语音转写：", "/a.wav", "你好", 10, 2)
    assert "你好" in line and json.loads(line)["messages"][1]["content"] == "语音转写：<|startofspeech|>!/a.wav<|endofspeech|>"


@pytest.mark.parametrize("transcript", ["你好", 'quote " and \\ backslash', "tab\tand\u2028line separator", "emoji 😀"])
def test_chatml_line_equals_json_dumps(transcript: str) -> None:
    record = {
        "key": "k/1",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "语音转写：<|startofspeech|>!/a b.wav<|endofspeech|>"},
            {"role": "assistant", "content": transcript},
        ],
        "speech_length": 123,
        "text_length": 4,
    }
    assert chatml_line("k/1", "语音转写：", "/a b.wav", transcript, 123, 4) == json.dumps(record, ensure_ascii=False)
