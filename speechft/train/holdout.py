"""The validation slice held out of the training data when no `--val` file is given.

Utterances are chosen by a hash of their key, so the same ones are held out run after run, on
every rank and whatever the order of the lines; none of them is trained on. A key found in several
`--train` files (a replayed source) is held out of all of them, so validation never scores what was
trained on. Pure functions over keys and index groups: testable without a model.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence


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
