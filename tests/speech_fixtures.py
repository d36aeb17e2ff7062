"""Generated audio and jsonl manifests for model and training tests (numpy tones + noise)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


def write_tone(path: Path, seconds: float, frequency: float, *, seed: int = 0, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> Path:
    """A tone plus a little noise; distinct frequencies make utterances distinguishable."""
    rng = np.random.default_rng(seed)
    count = int(seconds * sample_rate)
    time = np.arange(count) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * time) + 0.02 * rng.standard_normal(count)
    data = wave.astype(np.float32)
    if channels > 1:
        data = np.stack([data] * channels, axis=1)
    sf.write(path, data, sample_rate)
    return path


def chatml_line(key: str, audio: Path, text: str, *, prompt: str = "语音转写：", bang: bool = True, seconds: float | None = None) -> dict:
    marker = "!" if bang else ""
    line = {
        "key": key,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"{prompt}<|startofspeech|>{marker}{audio}<|endofspeech|>"},
            {"role": "assistant", "content": text},
        ],
        "text_length": len(text),
    }
    if seconds is not None:
        line["speech_length"] = int((seconds * 1000 - 25) // 10 + 1)
    return line


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


# Short "utterances": each transcript is tied to a distinct tone so a tiny model can overfit them.
TEXTS = ["one two", "three", "four five six", "seven", "eight nine", "ten"]


def make_corpus(directory: Path, count: int = 6, *, prefix: str = "utt", seconds: float = 0.8) -> list[dict]:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        audio = write_tone(directory / f"{prefix}{index}.wav", seconds + 0.1 * (index % 3), 220.0 + 110.0 * index, seed=index)
        lines.append(chatml_line(f"{prefix}{index}", audio, TEXTS[index % len(TEXTS)], seconds=seconds + 0.1 * (index % 3)))
    return lines
