"""Decode a list of utterances in batches, resumably, to a `key<TAB>text` file.

The model side is a :class:`Transcriber` (waveforms + prompts -> texts); everything else lives
here: reading the inputs, long-audio segmentation, length-sorted batching, error bookkeeping,
flushing results as they are produced and restoring input order at the end.

Crash safety: finished utterances are appended and flushed after every batch, so a crash loses at
most the batch in flight; `resume=True` skips keys already present. When the run completes, the
output is rewritten (temp file + rename) in input order.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from speechft.decode.segment import split_points
from speechft.errors import InputError, UsageError
from speechft.io.textfile import iter_keyed, iter_lines

SAMPLE_RATE = 16000
SPEECH_PATTERN = re.compile(r"<\|startofspeech\|>!(.*?)<\|endofspeech\|>", re.DOTALL)


class Transcriber(Protocol):
    """Turns a batch of 16 kHz mono waveforms and their prompts into texts, in order."""

    def transcribe(self, waveforms: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class DecodeItem:
    """One utterance to decode: its key, audio path or URL, and the prompt to decode it with."""

    key: str
    source: str
    prompt: str


@dataclass(frozen=True)
class DecodeOptions:
    batch_size: int = 16
    """Most segments per batch."""
    batch_seconds: float | None = None
    """If set, also bound the padded audio seconds per batch (longest segment x batch size)."""
    max_segment_seconds: float = 30.0
    """Audio longer than this is split at low-energy points and the texts joined."""
    resume: bool = False
    """Skip keys already in the output file instead of starting it afresh."""
    load_workers: int = 4
    """Threads loading audio ahead of the model."""
    chunk_batches: int = 8
    """Audio is loaded and length-sorted this many batches at a time."""


@dataclass
class DecodeSummary:
    total: int = 0
    resumed: int = 0
    decoded: int = 0
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return self.elapsed_s / self.audio_seconds if self.audio_seconds else 0.0


ProgressCallback = Callable[[DecodeSummary], None]
AudioLoader = Callable[[str], np.ndarray]


def read_scp_items(path: str | Path, prompt: str) -> list[DecodeItem]:
    """`key path-or-URL` lines, each decoded with `prompt`. Duplicate keys are an error."""
    items: list[DecodeItem] = []
    seen: dict[str, int] = {}
    for entry in iter_keyed(path):
        if entry.key in seen:
            raise InputError(f"{path}:{entry.lineno}: duplicate key {entry.key!r} (first at line {seen[entry.key]})")
        if not entry.text:
            raise InputError(f"{path}:{entry.lineno}: key {entry.key!r} has no audio path; expected `key path`")
        seen[entry.key] = entry.lineno
        items.append(DecodeItem(entry.key, entry.text, prompt))
    return items


def read_jsonl_items(path: str | Path) -> list[DecodeItem]:
    """A `speechft prep` jsonl: each line decoded with its own user prompt."""
    items: list[DecodeItem] = []
    seen: set[str] = set()
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
            user = next(m["content"] for m in record["messages"] if m["role"] == "user")
        except (json.JSONDecodeError, KeyError, TypeError, StopIteration):
            raise InputError(f"{where}: not a prep jsonl line (need messages with a user turn)") from None
        match = SPEECH_PATTERN.search(user)
        if match is None:
            raise InputError(f"{where}: user turn has no <|startofspeech|>!PATH<|endofspeech|>")
        key = str(record.get("key") or f"line{lineno}")
        if key in seen:
            raise InputError(f"{where}: duplicate key {key!r}")
        seen.add(key)
        items.append(DecodeItem(key, match.group(1), user[: match.start()]))
    return items


def read_finished(output: Path) -> dict[str, str]:
    """Keys already decoded in `output`; a last line cut off by a crash (no newline) is ignored."""
    if not output.exists():
        return {}
    finished: dict[str, str] = {}
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    for line in complete.splitlines():
        key, _, text = line.partition("\t")
        if key:
            finished[key] = text
    return finished


def join_texts(parts: Sequence[str]) -> str:
    """Join segment texts: a space between two Latin/digit ends, nothing between CJK characters."""
    joined = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if joined and joined[-1].isascii() and joined[-1].isalnum() and part[0].isascii() and part[0].isalnum():
            joined += " "
        joined += part
    return joined


def clean_text(text: str) -> str:
    """One line of output text: whitespace runs (newlines included) become one space."""
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class _Pending:
    item: DecodeItem
    parts: list[str | None]


def _batches(segments: list[tuple[int, int, np.ndarray]], options: DecodeOptions) -> Iterator[list[tuple[int, int, np.ndarray]]]:
    """Longest first, so padding inside a batch is small and a too-big batch fails first."""
    ordered = sorted(segments, key=lambda s: len(s[2]), reverse=True)
    batch: list[tuple[int, int, np.ndarray]] = []
    for segment in ordered:
        longest = len(batch[0][2]) if batch else len(segment[2])
        over_seconds = (
            options.batch_seconds is not None
            and batch
            and longest * (len(batch) + 1) / SAMPLE_RATE > options.batch_seconds
        )
        if batch and (len(batch) >= options.batch_size or over_seconds):
            yield batch
            batch = []
        batch.append(segment)
    if batch:
        yield batch


def decode_items(
    items: Sequence[DecodeItem],
    transcriber: Transcriber,
    output: str | Path,
    load_audio: AudioLoader,
    options: DecodeOptions = DecodeOptions(),
    errors_path: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> DecodeSummary:
    """Decode `items` into `output` (`key<TAB>text`, input order). Returns the summary.

    A key whose audio cannot be loaded or is empty gets an empty text and a line
    `key<TAB>reason` in `errors_path` (default: `decode_errors.tsv` beside the output).
    """
    if options.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    output = Path(output)
    errors_path = Path(errors_path) if errors_path else output.parent / "decode_errors.tsv"
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = DecodeSummary(total=len(items))
    started = time.perf_counter()

    finished = read_finished(output) if options.resume else {}
    known = {item.key for item in items}
    summary.resumed = sum(1 for key in finished if key in known)
    todo = [item for item in items if item.key not in finished]
    if options.resume and output.exists():
        # Rewrite what survived (drops a cut-off last line) before appending.
        _write_lines(output, [(k, t) for k, t in finished.items()])
    elif output.exists():
        output.unlink()
    failed: list[tuple[str, str]] = []
    summary.errors = failed  # shared, so progress callbacks see failures as they happen

    chunk_size = max(1, options.batch_size * options.chunk_batches)
    with open(output, "a", encoding="utf-8", newline="\n") as sink, ThreadPoolExecutor(options.load_workers) as pool:
        chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]

        def submit(chunk: Sequence[DecodeItem]) -> list[Future[np.ndarray | str]]:
            return [pool.submit(_load, load_audio, item) for item in chunk]

        # Load the next chunk while the model works on this one; never more than two in memory.
        upcoming = submit(chunks[0]) if chunks else []
        for number, chunk in enumerate(chunks):
            loaded = [future.result() for future in upcoming]
            upcoming = submit(chunks[number + 1]) if number + 1 < len(chunks) else []
            pending: dict[int, _Pending] = {}
            segments: list[tuple[int, int, np.ndarray]] = []
            for index, (item, result) in enumerate(zip(chunk, loaded)):
                if isinstance(result, str):
                    failed.append((item.key, result))
                    sink.write(f"{item.key}\t\n")
                    continue
                summary.audio_seconds += len(result) / SAMPLE_RATE
                ranges = split_points(result, SAMPLE_RATE, options.max_segment_seconds)
                pending[index] = _Pending(item, [None] * len(ranges))
                segments.extend((index, part, result[start:end]) for part, (start, end) in enumerate(ranges))
            sink.flush()
            for batch in _batches(segments, options):
                texts = transcriber.transcribe(
                    [segment for _, _, segment in batch], [pending[index].item.prompt for index, _, _ in batch]
                )
                for (index, part, _), text in zip(batch, texts):
                    pending[index].parts[part] = text
                for index in {index for index, _, _ in batch}:
                    entry = pending[index]
                    if all(part is not None for part in entry.parts):
                        sink.write(f"{entry.item.key}\t{clean_text(join_texts(entry.parts))}\n")
                        summary.decoded += 1
                        del pending[index]
                sink.flush()
                summary.elapsed_s = time.perf_counter() - started
                if on_progress is not None:
                    on_progress(summary)

    _write_errors(errors_path, failed, append=options.resume)
    results = read_finished(output)
    _write_lines(output, [(item.key, results.get(item.key, "")) for item in items])
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _load(load_audio: AudioLoader, item: DecodeItem) -> np.ndarray | str:
    """The waveform, or the reason it cannot be decoded (a string)."""
    try:
        waveform = load_audio(item.source)
    except InputError as error:
        return str(error)
    except (OSError, RuntimeError, ValueError) as error:
        return f"{item.source}: cannot load audio ({error})"
    if len(waveform) == 0:
        return f"{item.source}: empty audio"
    return waveform


def _write_lines(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{key}\t{text}\n" for key, text in rows)
    os.replace(temporary, path)


def _write_errors(path: Path, failed: Sequence[tuple[str, str]], append: bool) -> None:
    if not failed and not (append and path.exists()):
        if path.exists():
            path.unlink()
        return
    with open(path, "a" if append else "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{key}\t{clean_text(reason)}\n" for key, reason in failed)
