"""Decode a list of utterances in batches, resumably, to a `key<TAB>text` file.

The model side is a :class:`Transcriber` (waveforms + prompts -> texts), the inputs come from
:mod:`speechft.decode.inputs` and their audio through :mod:`speechft.decode.prefetch`; this module
does long-audio segmentation, length-sorted batching, error bookkeeping, flushing results as they
are produced and restoring input order at the end.

Memory: audio is loaded ahead of the model in threads, but never more than
`DecodeOptions.max_seconds_in_flight` seconds of it (plus one recording longer than that) is held
loaded and not yet decoded, whatever the number or length of the files: an hour-long recording is
loaded alone rather than next to a queue of others.

Crash safety: finished utterances are appended and flushed after every batch, so a crash loses at
most the batch in flight; `resume=True` skips keys already present. When the run completes, the
output is rewritten (temp file + rename) in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from speechft.data.audio import MODEL_SAMPLE_RATE, probe_seconds
from speechft.decode.inputs import DecodeItem
from speechft.decode.prefetch import AudioLoader, AudioMeasure, Prefetch
from speechft.decode.segment import split_points
from speechft.errors import UsageError
from speechft.io import atomic
from speechft.model.generate import clean_text


class Transcriber(Protocol):
    """Turns a batch of 16 kHz mono waveforms and their prompts into texts, in order."""

    def transcribe(self, waveforms: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]: ...


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
        over_seconds = options.batch_seconds is not None and batch and longest * (len(batch) + 1) / MODEL_SAMPLE_RATE > options.batch_seconds
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
    prefetch = Prefetch(todo, load_audio, measure_audio, options.load_workers, options.max_seconds_in_flight)
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
    prefetch: Prefetch,
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


def _write_lines(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    atomic.write_lines(path, (f"{key}\t{text}" for key, text in rows))


def _write_errors(path: Path, failed: Sequence[tuple[str, str]], append: bool) -> None:
    if not failed and not (append and path.exists()):
        if path.exists():
            path.unlink()
        return
    with open(path, "a" if append else "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{key}\t{clean_text(reason)}\n" for key, reason in failed)
