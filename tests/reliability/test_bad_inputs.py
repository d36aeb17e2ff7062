"""A corpus of every kind of bad input, generated here: each line trains or is skipped with a
reason naming it, and trained + skipped = total lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from speech_fixtures import chatml_line, write_tone

torch = pytest.importorskip("torch")


def write_bad_corpus(root: Path) -> tuple[Path, dict[str, str]]:
    """The jsonl, and for each line that must be skipped a word its reason must contain."""
    wav = root / "wav"
    wav.mkdir(parents=True)
    lines: list[bytes] = []

    def add(line: dict) -> None:
        lines.append(json.dumps(line, ensure_ascii=False).encode("utf-8"))

    for index in range(4):
        add(chatml_line(f"good{index}", write_tone(wav / f"good{index}.wav", 0.8, 300.0 + 100 * index, seed=index), "one two", seconds=0.8))
    add(chatml_line("rate8k", write_tone(wav / "rate8k.wav", 0.8, 350.0, sample_rate=8000), "three", seconds=0.8))
    add(chatml_line("stereo", write_tone(wav / "stereo.wav", 0.8, 450.0, channels=2), "four", seconds=0.8))
    expected: dict[str, str] = {}

    lines.append(b'{"key": "broken-json", "messages": [')
    expected["line-7"] = "not valid JSON"
    add({"key": "no-messages", "speech_length": 79, "text_length": 3})
    expected["no-messages"] = "messages"
    add(chatml_line("no-bang", wav / "good0.wav", "five", bang=False, seconds=0.8))
    expected["no-bang"] = "'!'"
    add(chatml_line("missing-file", wav / "nowhere.wav", "six", seconds=0.8))
    expected["missing-file"] = "audio unreadable"
    corrupt = wav / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    add(chatml_line("corrupt", corrupt, "seven", seconds=0.8))
    expected["corrupt"] = "audio unreadable"
    empty_audio = wav / "empty.wav"
    sf.write(empty_audio, np.zeros(0, dtype=np.float32), 16000)
    add(chatml_line("zero-length", empty_audio, "eight"))  # no speech_length: read from the header
    expected["zero-length"] = "fbank frames < data.min_speech_frames"
    long_audio = wav / "ten-minutes.wav"
    sf.write(long_audio, np.zeros(16000 * 600, dtype=np.int16), 16000, subtype="PCM_16")
    add(chatml_line("ten-minutes", long_audio, "nine"))
    expected["ten-minutes"] = "data.max_sample_tokens"
    add(chatml_line("empty-text", wav / "good1.wav", "   ", seconds=0.8))
    expected["empty-text"] = "empty transcript"
    lines.append(
        json.dumps(chatml_line("latin1", wav / "good2.wav", "caf\u00e9", prompt="Speech transcription:", seconds=0.8), ensure_ascii=False).encode("latin-1")
    )
    expected["line-15"] = "not UTF-8"
    path = root / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, expected


@pytest.mark.slow
def test_every_bad_line_is_trained_or_skipped_with_its_reason(tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.testing.tiny_model import build_tiny_model_dir
    from speechft.train.config import load_config
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    corpus, expected = write_bad_corpus(tmp_path / "corpus")
    total = len(corpus.read_bytes().splitlines())
    model = build_tiny_model_dir(tmp_path / "model", seed=0)
    # Most lines are bad on purpose: allow it, and keep every good line for training.
    settings = ["data.num_workers=0", "max_epochs=1", "data.max_utterances_per_batch=2", "validation.held_out_fraction=0", "data.max_skip_fraction=1"]
    config = load_config(profiles_dir() / "small-data.yaml", settings)
    output = tmp_path / "run"
    result = run_training(TrainRequest(model_dir=model, train=(TrainSource(corpus),), output_dir=output, config=config, show_progress=False))

    reasons = {}
    for line in (output / "skipped.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        reasons.setdefault(record["key"], record["reason"])
    for key, words in expected.items():
        assert key in reasons, f"{key} was not reported; reported: {sorted(reasons)}"
        assert words in reasons[key], (key, reasons[key])
    assert set(reasons) == set(expected)
    assert result.first_epoch_samples == 6  # 4 good lines, the 8 kHz one resampled, the stereo one averaged
    assert result.skipped_samples == len(expected)
    assert result.first_epoch_samples + result.skipped_samples == total
