"""The validation slice held out of the training data when no `--val` file is given.

Utterances are chosen by a hash of their key (the first 64 bits of its SHA-256, kept in the index), so the same ones are held out run after run, on
every rank and whatever the order of the lines; none of them is trained on. A key found in several
`--train` files (a replayed source) is held out of all of them, so validation never scores what was
trained on. Pure functions over key hashes and sources, testable without a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechft.data.index import ManifestIndex, key_hash
from speechft.data.manifest import Utterance
from speechft.train.config import ValidationConfig


def held_out_count(utterances: int, *, fraction: float, limit: int) -> int:
    """How many of `utterances` distinct keys to hold out: `fraction` of them rounded down, but at
    least 1 when there are 2 or more, at most `limit` (0: no limit), and never all of them."""
    if fraction <= 0 or utterances < 2:
        return 0
    count = max(1, math.floor(fraction * utterances))
    if limit:
        count = min(count, limit)
    return min(count, utterances - 1)


def distinct_keys(key_hashes: np.ndarray) -> int:
    return int(len(key_hashes) and 1 + np.count_nonzero(np.diff(np.sort(key_hashes))))


def held_out_positions(key_hashes: np.ndarray, sources: np.ndarray, count: int) -> np.ndarray:
    """Positions (sorted) of the utterances held out: the `count` distinct keys first by hash,
    passing over any whose removal would leave a source (one `--train` file; -1: none) without an
    utterance to train on. Every line of a chosen key is held out."""
    if count <= 0 or len(key_hashes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(key_hashes, kind="stable")
    ordered = key_hashes[order]
    bounds = np.append(np.flatnonzero(np.diff(ordered)) + 1, len(ordered))
    remaining = np.bincount(sources[sources >= 0], minlength=1)
    held: list[np.ndarray] = []
    begin = 0
    for end in bounds.tolist():
        if len(held) == count:
            break
        positions, begin = order[begin:end], end
        lines = sources[positions]
        losses = np.bincount(lines[lines >= 0], minlength=len(remaining))
        if np.any((losses > 0) & (remaining <= losses)):
            continue
        remaining -= losses
        held.append(positions)
    return np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)


def split_held_out(keys: Sequence[str], groups: Sequence[Sequence[int]], count: int) -> set[int]:
    """:func:`held_out_positions` for keys given as strings and sources as index groups."""
    sources = np.full(len(keys), -1, dtype=np.int64)
    for number, group in enumerate(groups):
        sources[list(group)] = number
    hashes = np.array([key_hash(key) for key in keys], dtype=np.uint64)
    return set(held_out_positions(hashes, sources, count).tolist())


def hold_out(index: ManifestIndex, settings: ValidationConfig) -> tuple[ManifestIndex, list[Utterance]]:
    """(training lines, validation utterances): the held-out slice leaves training; a key held out
    several times is validated once (its first line)."""
    count = held_out_count(distinct_keys(index.key_hashes), fraction=settings.held_out_fraction, limit=settings.max_utterances)
    held = held_out_positions(index.key_hashes, index.sources, count)
    if len(held) == 0:
        return index, []
    _, first = np.unique(index.key_hashes[held], return_index=True)
    validation = [index.utterance(int(position)) for position in np.sort(held[first])]
    keep = np.ones(len(index), dtype=bool)
    keep[held] = False
    return index.take(keep), validation


def describe_validation(val: Path | None, settings: ValidationConfig, held_out: int, usable: int, skipped: int, skipped_file: str) -> str:
    """Where the validation utterances come from, in words, for the terminal and metrics.jsonl."""
    if val is not None:
        lost = f"; {skipped} of its lines skipped (reasons in {skipped_file})" if skipped else ""
        return f"validation: {usable} utterances of --val {val}{lost}"
    if held_out:
        failed = f" ({held_out - usable} unreadable)" if held_out > usable else ""
        return (
            f"validation: {held_out} utterances{failed} held out of the training data by a hash of their keys "
            f"(validation.held_out_fraction {settings.held_out_fraction:g}, at most validation.max_utterances); they are not trained on"
        )
    why = "validation.held_out_fraction is 0" if settings.held_out_fraction == 0 else "one training utterance cannot be split"
    return f"validation: none (no --val, and {why}); checkpoints are ranked by step, the last one is best"
