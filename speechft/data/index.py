"""A training manifest kept on disk: compact arrays per line, the line itself read when its sample loads.

:meth:`ManifestIndex.build` validates every line of the `--train` files once and keeps, per usable
line, its byte offset and line number, `speech_length`, `text_length`, its file and a 64-bit hash
of its key (32 bytes a line: ten million lines in 320 MB). Lines in prep's exact layout are
recognised block by block (:data:`~speechft.data.manifest.CANONICAL_LINES`, one regex pass over
16 MB at a time) without building a record; any other line
goes through :func:`~speechft.data.manifest.parse_line`, the one definition of a usable line, so
both give the same verdict and unusable lines are the same :class:`Skip` with file:line.
`index[i]` seeks to line i and parses it into an :class:`Utterance`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from speechft.data.manifest import (
    CANONICAL_LINES,
    LFR_STRIDE,
    Skip,
    Utterance,
    canonical_fields,
    complete_lengths,
    length_problem,
    parse_line,
    plain_transcript,
)
from speechft.errors import InputError

BLOCK_BYTES = 1 << 24
ARRAYS = ("offsets", "line_numbers", "speech_frames", "text_tokens", "sources", "key_hashes")


def key_hash(key: str | bytes) -> int:
    """The first 64 bits of the key's SHA-256: the held-out order, stable across runs and ranks."""
    data = key.encode("utf-8") if isinstance(key, str) else key
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _hashes(keys: Sequence[bytes]) -> np.ndarray:
    """key_hash of many UTF-8 keys at once."""
    digests = b"".join([hashlib.sha256(key).digest()[:8] for key in keys])
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


class _FileColumns:
    """Per-line values of one file, gathered in lists while a block is read, then kept as arrays."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.line_numbers: list[int] = []
        self.speech_frames: list[int] = []
        self.text_tokens: list[int] = []
        self.keys: list[bytes] = []
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, offset: int, number: int, frames: int, tokens: int, key: bytes) -> None:
        self.offsets.append(offset)
        self.line_numbers.append(number)
        self.speech_frames.append(frames)
        self.text_tokens.append(tokens)
        self.keys.append(key)

    def flush(self) -> None:
        """Move what was gathered into numpy arrays (a Python int costs 28 bytes, a list slot 8 more)."""
        if not self.offsets:
            return
        self.blocks.append(
            {
                "offsets": np.array(self.offsets, dtype=np.int64),
                "line_numbers": np.array(self.line_numbers, dtype=np.int32),
                "speech_frames": np.array(self.speech_frames, dtype=np.int32),
                "text_tokens": np.array(self.text_tokens, dtype=np.int32),
                "key_hashes": _hashes(self.keys),
            }
        )
        for gathered in (self.offsets, self.line_numbers, self.speech_frames, self.text_tokens, self.keys):
            gathered.clear()

    def arrays(self, source: int) -> dict[str, np.ndarray]:
        self.flush()
        names = ("offsets", "line_numbers", "speech_frames", "text_tokens", "key_hashes")
        joined = {name: np.concatenate([block[name] for block in self.blocks]) if self.blocks else np.zeros(0, dtype=np.int64) for name in names}
        joined["sources"] = np.full(len(joined["offsets"]), source, dtype=np.int32)
        return joined


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, block of whole lines) of a file, read in large blocks; the last may lack its newline."""
    with open(path, "rb") as handle:
        offset, rest = 0, b""
        while block := handle.read(BLOCK_BYTES):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield offset, block[:cut]
                offset += cut
            rest = block[cut:]
        if rest:
            yield offset, rest + b"\n"


class _FileReader:
    """One file's usable lines into columns, its unusable ones into skips."""

    def __init__(self, path: Path, tokenizer: Any, url_cache_dir: str | Path | None) -> None:
        self.path, self.tokenizer, self.url_cache_dir = path, tokenizer, url_cache_dir
        self.columns = _FileColumns()
        self.skipped: list[Skip] = []
        self.number = 0  # lines read so far

    def read(self) -> None:
        for offset, block in _blocks(self.path):
            if _is_utf8(block):
                self._scan(offset, block)
            else:
                self._slowly(offset, block, 0, len(block))
            self.columns.flush()

    def _scan(self, offset: int, block: bytes) -> None:
        """A block all in prep's layout in one pass (the common case), else line by line."""
        rows = CANONICAL_LINES.findall(block)
        if len(rows) != block.count(b"\n") or not all(plain_transcript(row[1]) for row in rows):
            self._scan_mixed(offset, block)
            return
        starts = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))[:-1] + 1
        self.columns.flush()
        self.columns.blocks.append(
            {
                "offsets": np.concatenate([[0], starts]).astype(np.int64) + offset,
                "line_numbers": np.arange(self.number + 1, self.number + 1 + len(rows), dtype=np.int32),
                "speech_frames": np.array([row[2] for row in rows]).astype(np.int32),
                "text_tokens": np.array([row[3] for row in rows]).astype(np.int32),
                "key_hashes": _hashes([row[0] for row in rows]),
            }
        )
        self.number += len(rows)

    def _scan_mixed(self, offset: int, block: bytes) -> None:
        """Lines in prep's layout found in one pass over the block; the lines between them parsed."""
        position = 0
        add = self.columns.add
        for found in CANONICAL_LINES.finditer(block):
            start = found.start()
            if start != position:
                self._slowly(offset, block, position, start)
            fields = canonical_fields(found)
            if fields is None:
                self._slowly(offset, block, start, found.end() + 1)
            else:
                self.number += 1
                add(offset + start, self.number, fields[1], fields[2], fields[0])
            position = found.end() + 1
        if position < len(block):
            self._slowly(offset, block, position, len(block))

    def _slowly(self, offset: int, block: bytes, begin: int, end: int) -> None:
        """The whole lines of `block[begin:end]` through parse_line."""
        while begin < end:
            stop = block.index(b"\n", begin)
            self.number += 1
            parsed = _parse_slowly(block[begin:stop].rstrip(b"\r"), f"{self.path}:{self.number}", self.number, self.tokenizer, self.url_cache_dir)
            if isinstance(parsed, Skip):
                self.skipped.append(parsed)
            elif parsed is not None:
                self.columns.add(offset + begin, self.number, parsed.speech_frames, parsed.text_tokens, parsed.key.encode("utf-8"))
            begin = stop + 1


def _index_file(path: Path, source: int, tokenizer: Any, url_cache_dir: str | Path | None) -> tuple[dict[str, np.ndarray], list[Skip]]:
    reader = _FileReader(path, tokenizer, url_cache_dir)
    reader.read()
    return reader.columns.arrays(source), reader.skipped


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_slowly(line: bytes, where: str, number: int, tokenizer: Any, url_cache_dir: str | Path | None) -> Utterance | Skip | None:
    """A line not in prep's layout, through parse_line; None for a blank line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Skip(f"line-{number}", "not UTF-8", where)
    if not text.strip():
        return None
    return complete_lengths(parse_line(text, where, f"line-{number}"), tokenizer, url_cache_dir)


class ManifestIndex(Sequence[Utterance]):
    """The usable lines of one or more jsonl files as arrays; `index[i]` reads line i from disk.

    Picklable: the arrays travel, open files do not (each process opens its own, lazily).
    """

    def __init__(self, paths: Sequence[Path], arrays: dict[str, np.ndarray]) -> None:
        self.paths = [Path(path) for path in paths]
        self.offsets: np.ndarray = arrays["offsets"]
        self.line_numbers: np.ndarray = arrays["line_numbers"]
        self.speech_frames: np.ndarray = arrays["speech_frames"]
        self.text_tokens: np.ndarray = arrays["text_tokens"]
        self.sources: np.ndarray = arrays["sources"]
        self.key_hashes: np.ndarray = arrays["key_hashes"]
        self._files: dict[int, int] = {}
        self._pid = os.getpid()

    @classmethod
    def build(cls, paths: Sequence[str | Path], tokenizer: Any = None, url_cache_dir: str | Path | None = None) -> tuple[ManifestIndex, list[Skip]]:
        """Index every usable line of `paths` (file i is source i), and the skipped lines.

        As :func:`~speechft.data.manifest.read_manifest`: missing lengths come from the audio header
        and `tokenizer`; an unreadable file, or one with no usable line, is an InputError."""
        parts, skipped = [], []
        for source, path in enumerate(map(Path, paths)):
            try:
                arrays, bad = _index_file(path, source, tokenizer, url_cache_dir)
            except OSError as error:
                raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
            if len(arrays["offsets"]) == 0:
                reasons = "; ".join(sorted({s.reason for s in bad})[:3]) or "the file is empty"
                raise InputError(f"{path}: no usable lines ({reasons})")
            parts.append(arrays)
            skipped += bad
        joined = {name: np.concatenate([part[name] for part in parts]) for name in ARRAYS} if parts else _empty()
        return cls([Path(path) for path in paths], joined), skipped

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAYS)

    @property
    def batch_tokens(self) -> np.ndarray:
        """Per line, what the token budget counts (Utterance.batch_tokens)."""
        return self.speech_frames.astype(np.int64) + self.text_tokens

    @property
    def sort_keys(self) -> np.ndarray:
        """Per line, Utterance.sort_key (LFR frames, then tokens) as one int64 that sorts the same."""
        lfr = -(-self.speech_frames.astype(np.int64) // LFR_STRIDE)
        tokens = self.text_tokens.astype(np.int64)
        return lfr * (int(tokens.max(initial=0)) + 1) + tokens

    @property
    def seconds(self) -> float:
        return float(self.speech_frames.sum(dtype=np.int64)) / 100.0

    def where(self, position: int) -> str:
        return f"{self.paths[int(self.sources[position])]}:{int(self.line_numbers[position])}"

    def take(self, positions: np.ndarray) -> ManifestIndex:
        """The lines at `positions` (an index array or a boolean mask), in that order."""
        return ManifestIndex(self.paths, {name: getattr(self, name)[positions] for name in ARRAYS})

    @overload
    def __getitem__(self, position: int) -> Utterance: ...
    @overload
    def __getitem__(self, position: slice) -> list[Utterance]: ...
    def __getitem__(self, position: int | slice) -> Utterance | list[Utterance]:
        if isinstance(position, slice):
            return [self.utterance(index) for index in range(*position.indices(len(self)))]
        return self.utterance(position)

    def utterance(self, position: int) -> Utterance:
        """Line `position` read from disk and parsed; lengths as indexed (read from headers if the line lacked them)."""
        if not -len(self) <= position < len(self):
            raise IndexError(f"line {position} of an index of {len(self)}")
        source, where = int(self.sources[position]), self.where(position)
        raw = self._read_line(source, int(self.offsets[position]))
        try:
            parsed = parse_line(raw.decode("utf-8"), where, f"line-{int(self.line_numbers[position])}")
        except UnicodeDecodeError:
            parsed = Skip("", "not UTF-8", where)
        if isinstance(parsed, Skip):
            raise InputError(f"{where}: the line changed after training started ({parsed.reason}); restart the run")
        frames, tokens = int(self.speech_frames[position]), int(self.text_tokens[position])
        if (parsed.speech_frames, parsed.text_tokens) != (frames, tokens):
            parsed = dataclasses.replace(parsed, speech_frames=frames, text_tokens=tokens)
        return parsed

    def key(self, position: int) -> str:
        return self.utterance(position).key

    def _read_line(self, source: int, offset: int) -> bytes:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()  # a forked worker: its own descriptors
        descriptor = self._files.get(source)
        if descriptor is None:
            descriptor = self._files[source] = os.open(self.paths[source], os.O_RDONLY)
        # pread: no shared file position, so processes and threads never disturb each other.
        pieces, size = [], 4096
        while True:
            piece = os.pread(descriptor, size, offset)
            end = piece.find(b"\n")
            if end >= 0:
                pieces.append(piece[:end])
                break
            pieces.append(piece)
            if len(piece) < size:
                break
            offset += len(piece)
            size *= 4
        return b"".join(pieces).rstrip(b"\r")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for descriptor in getattr(self, "_files", {}).values():
                os.close(descriptor)


def filter_index_lengths(index: ManifestIndex, *, max_sample_tokens: int, min_speech_frames: int) -> tuple[ManifestIndex, list[Skip]]:
    """:func:`~speechft.data.manifest.filter_lengths` over the arrays: the lines within the limits,
    and a Skip (read from disk, with its key) for each of the others."""
    lengths = index.batch_tokens
    outside = np.flatnonzero((lengths > max_sample_tokens) | (index.speech_frames < min_speech_frames))
    skipped = []
    for position in outside.tolist():
        problem = length_problem(
            int(lengths[position]), int(index.speech_frames[position]), max_sample_tokens=max_sample_tokens, min_speech_frames=min_speech_frames
        )
        skipped.append(Skip(index.key(position), problem or "", index.where(position)))
    if len(outside) == 0:
        return index, skipped
    keep = np.ones(len(index), dtype=bool)
    keep[outside] = False
    return index.take(keep), skipped


def _empty() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=np.int64) for name in ARRAYS}
