"""Stage 5, split: the validation share, chosen by a hash of each key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from speechft.data.prep.checks import KeptUtterance


def is_validation(key: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic split by a hash of the key: the same key lands on the same side on any machine."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass(frozen=True)
class Split:
    """The kept utterances on each side, each side in input order."""

    train: list[KeptUtterance]
    validation: list[KeptUtterance]


def split(kept: Sequence[KeptUtterance], fraction: float, seed: int = 0) -> Split:
    if fraction <= 0:
        return Split(list(kept), [])
    train: list[KeptUtterance] = []
    validation: list[KeptUtterance] = []
    for utterance in kept:
        (validation if is_validation(utterance.key, fraction, seed) else train).append(utterance)
    return Split(train, validation)
