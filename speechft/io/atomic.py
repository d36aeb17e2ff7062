"""Atomic writes: a reader (or a run resumed after a crash) sees the old file or the new one, never half.

Everything is written to a temporary name beside the target (same directory, so the same filesystem
and `os.replace` is a rename), flushed to disk, then renamed over the target. Temporary names start
with `TEMP_PREFIX`, so `--overwrite` and checkpoint listings recognise and skip leftovers of a crash.
Errors are re-raised unchanged after the temporary is removed; callers turn them into domain errors
naming what they were writing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def fsync_directory(path: str | Path) -> None:
    """Flush a directory entry (a rename inside it) to disk; filesystems that refuse are left alone."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` for any writer; on success it replaces `path`.

    `durable=False` skips the fsync, for many small files whose loss in a power cut only costs
    redoing them (the rename alone still keeps readers from seeing half a file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two processes writing the same target from sharing one temporary.
    temporary = target.with_name(f"{TEMP_PREFIX}{target.name}.{os.getpid()}")
    try:
        yield temporary
        if durable:
            _fsync_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    if durable:
        fsync_directory(target.parent)


def write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_path(path, durable=durable) as temporary:
        temporary.write_bytes(data)


def write_text(path: str | Path, text: str, *, durable: bool = True) -> None:
    """UTF-8 with `\\n` line ends on every platform."""
    with atomic_path(path, durable=durable) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_lines(path: str | Path, lines: Iterable[str], *, durable: bool = True) -> None:
    """Each line followed by `\\n`; `lines` may be a generator, so a huge file is never held in memory."""
    with atomic_path(path, durable=durable) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")


def torch_save(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it becomes `path`.

    An existing `path` is replaced whole (moved aside, the new one renamed in, the old one
    deleted), so a crash at any point leaves either the complete old or the complete new
    directory under the final name. Every file written inside is flushed before the rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(TEMP_PREFIX + target.name)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    try:
        yield temporary
        for written in temporary.rglob("*"):
            if written.is_file() and not written.is_symlink():
                _fsync_file(written)
        fsync_directory(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if target.exists():
        stale = target.with_name(OLD_PREFIX + target.name)
        if stale.exists():
            shutil.rmtree(stale)
        target.rename(stale)
        temporary.rename(target)
        shutil.rmtree(stale)
    else:
        temporary.rename(target)
    fsync_directory(target.parent)
