"""The validation slice held out of the training data when no `--val` file is given.

Utterances are chosen by a hash of their key, so the same ones are held out run after run, on
every rank and whatever the order of the lines; none of them is trained on. A key found in several
`--train` files (a replayed source) is held out of all of them, so validation never scores what was
trained on. Pure functions over keys, utterances and index groups: testable without a model.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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


def key_order(key: str) -> tuple[str, str]:
    """Sort key that spreads utterances evenly over speakers and files (unlike the key itself)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest(), key


def split_held_out(keys: Sequence[str], groups: Sequence[Sequence[int]], count: int) -> set[int]:
    """Indices into `keys` of the utterances held out: the `count` distinct keys first by
    :func:`key_order`, passing over any whose removal would leave a group (one `--train` file,
    given as indices into `keys`) without an utterance to train on."""
    positions: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        positions.setdefault(key, []).append(index)
    group_of = {index: number for number, group in enumerate(groups) for index in group}
    remaining = Counter({number: len(group) for number, group in enumerate(groups)})
    held: set[int] = set()
    chosen = 0
    for key in sorted(positions, key=key_order):
        if chosen == count:
            break
        losses = Counter(group_of[index] for index in positions[key] if index in group_of)
        if any(remaining[number] <= lost for number, lost in losses.items()):
            continue
        remaining.subtract(losses)
        held.update(positions[key])
        chosen += 1
    return held


def hold_out(utterances: list[Utterance], groups: list[list[int]], settings: ValidationConfig) -> tuple[list[Utterance], list[list[int]], list[Utterance]]:
    """(training utterances, their groups, validation utterances): the held-out slice leaves training."""
    keys = [u.key for u in utterances]
    count = held_out_count(len(set(keys)), fraction=settings.held_out_fraction, limit=settings.max_utterances)
    held = split_held_out(keys, groups, count)
    if not held:
        return utterances, groups, []
    position: dict[int, int] = {}
    kept: list[Utterance] = []
    for index, utterance in enumerate(utterances):
        if index not in held:
            position[index] = len(kept)
            kept.append(utterance)
    validation = list({utterances[index].key: utterances[index] for index in sorted(held, reverse=True)}.values())[::-1]
    return kept, [[position[index] for index in group if index in position] for group in groups], validation


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
