"""Generated audio, corpora, tokenizers and a loopback HTTP server for the prep tests."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from speechft.testing.tiny_tokenizer import build_tiny_tokenizer, write_qwen_pipeline

TOKENIZER_CORPUS = [
    "甚至出现交易几乎停滞的情况",
    "湖北一公司以员工名义贷款数十员工负债千万",
    "hello world, this is a test of the tiny tokenizer.",
    "今天是2024年5月1日，天气很好！",
    "the quick brown fox jumps over the lazy dog",
]


def make_tokenizer(directory: Path, qwen_pipeline: bool = True) -> Path:
    build_tiny_tokenizer(directory, TOKENIZER_CORPUS, vocab_size=320)
    if qwen_pipeline:
        write_qwen_pipeline(directory)
    return directory


def write_wav(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> Path:
    frames = int(round(seconds * sample_rate))
    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(frames, channels)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, sample_rate, subtype="PCM_16")
    return path


def write_lines(path: Path, lines: list[str] | list[bytes]) -> Path:
    data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines)
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) serving `directory`; yields its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
