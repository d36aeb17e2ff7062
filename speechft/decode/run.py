"""Decode a list of utterances in batches, resumably, to a `key<TAB>text` file.

The model side is a :class:`Transcriber` (waveforms + prompts -> texts); everything else lives
here: reading the inputs, long-audio segmentation, length-sorted batching, error bookkeeping,
flushing results as they are produced and restoring input order at the end.

Memory: audio is loaded ahead of the model in threads, but never more than
`DecodeOptions.max_seconds_in_flight` seconds of it (plus one recording longer than that) is held
loaded and not yet decoded, whatever the number or length of the files: an hour-long recording is
loaded alone rather than next to a queue of others.

Crash safety: finished utterances are appended and flushed after every batch, so a crash loses at
most the batch in flight; `resume=True` skips keys already present. When the run completes, the
output is rewritten (temp file + rename) in input order.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from speechft.data.audio import MODEL_SAMPLE_RATE, probe_seconds
from speechft.decode.segment import split_points
from speechft.errors import InputError, UsageError
from speechft.io import atomic
from speechft.io.textfile import iter_keyed, iter_lines

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
    """Audio is length-sorted this many batches at a time (fewer when they exceed max_seconds_in_flight)."""
    max_seconds_in_flight: float = 600.0
    """Most seconds of audio held loaded but not yet decoded (64 KB of host memory per second); a
    single longer recording is still loaded, alone."""


@dataclass
class DecodeSummary:
    total: int = 0
    resumed: int = 0
    decoded: int = 0
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    peak_seconds_in_flight: float = 0.0
    """Most seconds of audio that were loaded and not yet decoded at any one time."""

    @property
    def real_time_factor(self) -> float:
        return self.elapsed_s / self.audio_seconds if self.audio_seconds else 0.0


ProgressCallback = Callable[[DecodeSummary], None]
AudioLoader = Callable[[str], np.ndarray]
AudioMeasure = Callable[[str], "float | None"]


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


class _Prefetch:
    """Loads items' audio in worker threads, in input order, within a budget of seconds.

    An item is admitted (its load may start) when the seconds held (loading, or loaded and not yet
    released by the consumer) plus its own length, read beforehand by `measure`, fit the budget,
    or when nothing is held. An item whose length `measure` cannot tell (a URL) is admitted while
    the held seconds are under the budget and no other such item is loading, and is counted once
    loaded. So at most `budget + one item` seconds are ever held. The consumer `take`s loaded items
    in input order and `release`s each one when it is done with its audio.
    """

    def __init__(self, items: Sequence[DecodeItem], load: AudioLoader, measure: AudioMeasure, workers: int, budget_s: float) -> None:
        self.items = items
        self.load = load
        self.measure = measure
        self.budget_s = budget_s
        self.lock = threading.Condition()
        self.turn = 0  # the next position to admit
        self.turn_waits = False  # the item at `turn` is measured and waits for room
        self.loading = 0  # admitted, not yet loaded
        self.unknown_loading = False
        self.held_items = 0  # admitted, not yet released
        self.held_s = 0.0
        self.peak_s = 0.0
        self.done: dict[int, tuple[np.ndarray | str | BaseException, float]] = {}
        self.cursor = 0  # the next position to hand to the consumer
        self.closed = False
        self.pool = ThreadPoolExecutor(max(1, workers))
        for position in range(len(items)):
            self.pool.submit(self._work, position)

    def _room_for(self, seconds: float | None) -> bool:
        if seconds is None:
            return not self.unknown_loading and (self.held_items == 0 or self.held_s < self.budget_s)
        return self.held_items == 0 or self.held_s + seconds <= self.budget_s

    def _work(self, position: int) -> None:
        item = self.items[position]
        try:
            seconds = self.measure(item.source)
        except (InputError, OSError, RuntimeError, ValueError):
            seconds = None
        with self.lock:
            while not self.closed and (self.turn != position or not self._room_for(seconds)):
                if self.turn == position:
                    self.turn_waits = True
                self.lock.wait()
            if self.closed:
                return
            self.turn_waits = False
            self.turn += 1
            self.loading += 1
            self.held_items += 1
            self.unknown_loading = self.unknown_loading or seconds is None
            self.held_s += seconds or 0.0
            self.peak_s = max(self.peak_s, self.held_s)
            self.lock.notify_all()
        result: np.ndarray | str | BaseException
        try:
            result = _load(self.load, item)
        except Exception as error:  # handed to the consumer, which raises it
            result = error
        actual = len(result) / MODEL_SAMPLE_RATE if isinstance(result, np.ndarray) else 0.0
        with self.lock:
            self.loading -= 1
            if seconds is None:
                self.unknown_loading = False
            self.held_s += actual - (seconds or 0.0)
            self.peak_s = max(self.peak_s, self.held_s)
            self.done[position] = (result, actual)
            self.lock.notify_all()

    def take(self, wanted: int) -> list[tuple[DecodeItem, np.ndarray | str, float]]:
        """The next up to `wanted` loaded items in input order (at least one while any are left).

        Fewer come back only at the end of the input, or when the budget keeps the next item from
        loading until these are released.
        """
        with self.lock:
            while True:
                ready = 0
                while ready < wanted and self.cursor + ready in self.done:
                    ready += 1
                finished = self.cursor + ready >= len(self.items)
                starved = self.loading == 0 and self.turn_waits and self.turn == self.cursor + ready
                if ready >= wanted or finished or (ready and starved):
                    break
                self.lock.wait()
            taken = []
            for position in range(self.cursor, self.cursor + ready):
                result, seconds = self.done.pop(position)
                if isinstance(result, BaseException):
                    raise result
                taken.append((self.items[position], result, seconds))
            self.cursor += ready
            return taken

    def release(self, seconds: float) -> None:
        """The consumer holds one item's audio no longer."""
        with self.lock:
            self.held_items -= 1
            self.held_s -= seconds
            self.lock.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _batches(segments: list[tuple[int, int, np.ndarray]], options: DecodeOptions) -> Iterator[list[tuple[int, int, np.ndarray]]]:
    """Longest first, so padding inside a batch is small and a too-big batch fails first."""
    ordered = sorted(segments, key=lambda s: len(s[2]), reverse=True)
    batch: list[tuple[int, int, np.ndarray]] = []
    for segment in ordered:
        longest = len(batch[0][2]) if batch else len(segment[2])
        over_seconds = (
            options.batch_seconds is not None
            and batch
            and longest * (len(batch) + 1) / MODEL_SAMPLE_RATE > options.batch_seconds
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
    measure_audio: AudioMeasure = probe_seconds,
) -> DecodeSummary:
    """Decode `items` into `output` (`key<TAB>text`, input order). Returns the summary.

    A key whose audio cannot be loaded or is empty gets an empty text and a line
    `key<TAB>reason` in `errors_path` (default: `decode_errors.tsv` beside the output).
    `measure_audio` tells an item's seconds before it is loaded (None: unknown), which keeps the
    audio held in memory within `options.max_seconds_in_flight`.
    """
    if options.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if options.max_seconds_in_flight <= 0:
        raise UsageError("--max-seconds-in-flight must be > 0")
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
    prefetch = _Prefetch(todo, load_audio, measure_audio, options.load_workers, options.max_seconds_in_flight)
    try:
        with open(output, "a", encoding="utf-8", newline="\n") as sink:
            while True:
                chunk = prefetch.take(chunk_size)
                if not chunk:
                    break
                _decode_chunk(chunk, transcriber, options, sink, summary, prefetch, started, on_progress)
    finally:
        prefetch.close()
        summary.peak_seconds_in_flight = prefetch.peak_s

    _write_errors(errors_path, failed, append=options.resume)
    results = read_finished(output)
    _write_lines(output, [(item.key, results.get(item.key, "")) for item in items])
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _decode_chunk(
    chunk: list[tuple[DecodeItem, np.ndarray | str, float]],
    transcriber: Transcriber,
    options: DecodeOptions,
    sink: TextIO,
    summary: DecodeSummary,
    prefetch: _Prefetch,
    started: float,
    on_progress: ProgressCallback | None,
) -> None:
    """Decode one length-sorted chunk; each item's audio is released as soon as its text is written."""
    pending: dict[int, _Pending] = {}
    held: dict[int, float] = {}
    segments: list[tuple[int, int, np.ndarray]] = []
    for index in range(len(chunk)):
        item, result, seconds = chunk[index]
        if isinstance(result, str):
            summary.errors.append((item.key, result))
            sink.write(f"{item.key}\t\n")
            prefetch.release(seconds)
            continue
        summary.audio_seconds += len(result) / MODEL_SAMPLE_RATE
        ranges = split_points(result, MODEL_SAMPLE_RATE, options.max_segment_seconds)
        pending[index] = _Pending(item, [None] * len(ranges))
        held[index] = seconds
        segments.extend((index, part, result[start:end]) for part, (start, end) in enumerate(ranges))
    # From here on only the segments (views) keep each waveform alive, so that releasing an item
    # below really frees its memory.
    chunk.clear()
    result = None
    sink.flush()
    batches = deque(_batches(segments, options))
    segments.clear()
    while batches:
        batch = batches.popleft()
        texts = transcriber.transcribe([segment for _, _, segment in batch], [pending[index].item.prompt for index, _, _ in batch])
        places = [(index, part) for index, part, _ in batch]
        del batch
        for (index, part), text in zip(places, texts):
            pending[index].parts[part] = text
        finished_here = {index for index, _ in places}
        for index in finished_here:
            entry = pending[index]
            if all(part is not None for part in entry.parts):
                sink.write(f"{entry.item.key}\t{clean_text(join_texts(entry.parts))}\n")
                summary.decoded += 1
                del pending[index]
                prefetch.release(held.pop(index))
        sink.flush()
        summary.elapsed_s = time.perf_counter() - started
        if on_progress is not None:
            on_progress(summary)


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
    atomic.write_lines(path, (f"{key}\t{text}" for key, text in rows))


def _write_errors(path: Path, failed: Sequence[tuple[str, str]], append: bool) -> None:
    if not failed and not (append and path.exists()):
        if path.exists():
            path.unlink()
        return
    with open(path, "a" if append else "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{key}\t{clean_text(reason)}\n" for key, reason in failed)
