"""Token-budget batches (UPSTREAM.md §2): bucketed by length, shuffled by (seed, epoch), sharded by
`rank`/`world_size` as plain arguments so sharding is testable without a process group, resumable
mid-epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def token_budget_batches(
    order: Sequence[int], lengths: Sequence[int], *, token_budget: int, max_utterances: int, sort_buffer: int, sort_keys: Sequence[Any] | None = None
) -> list[list[int]]:
    """Cut `order` into batches: within each buffer of `sort_buffer` indices sorted by `sort_keys`
    (default: `lengths`), add utterances while `longest x count <= token_budget` and
    `count <= max_utterances`, `longest` being the batch's largest `lengths` value."""
    keys = lengths if sort_keys is None else sort_keys
    batches: list[list[int]] = []
    for begin in range(0, len(order), sort_buffer):
        bucket = sorted(order[begin : begin + sort_buffer], key=lambda index: (keys[index], index))
        current: list[int] = []
        longest = 0
        for index in bucket:
            grown = max(longest, lengths[index])
            if current and (grown * (len(current) + 1) > token_budget or len(current) >= max_utterances):
                batches.append(current)
                current, grown = [], lengths[index]
            current.append(index)
            longest = grown
        if current:
            batches.append(current)
    return batches


def split_for_ranks(batches: list[list[int]], world_size: int) -> list[list[int]]:
    """`batches` made a multiple of `world_size` long by halving the largest ones, so that every
    rank gets the same number of batches and no utterance is dropped or repeated. Only when too few
    batches hold two or more utterances are the last few left out (the caller slices them off)."""
    batches = [list(batch) for batch in batches]
    while len(batches) % world_size:
        largest = max(range(len(batches)), key=lambda position: (len(batches[position]), position), default=None)
        if largest is None or len(batches[largest]) < 2:
            break
        batch = batches[largest]
        middle = len(batch) // 2
        batches[largest : largest + 1] = [batch[:middle], batch[middle:]]
    return batches


class TokenBatchSampler:
    """Deterministic token-budget batches for one rank of `world_size`, resumable mid-epoch.

    Each epoch draws, for every source group, `weight x size` utterances (whole copies plus a
    seeded random part), shuffles them by (seed, epoch), buckets by length and shuffles the
    batches. Rank r takes batches r, r + world_size, ...; every rank gets the same count (the largest
    batches are halved until the count divides evenly) so ranks step together and, over the ranks,
    each epoch covers every utterance exactly once. `set_epoch(epoch, start)`
    resumes after `start` batches of that epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        token_budget: int,
        max_utterances: int,
        sort_buffer: int = 1024,
        seed: int = 0,
        groups: Sequence[Sequence[int]] | None = None,
        weights: Sequence[float] | None = None,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        sort_keys: Sequence[Any] | None = None,
        epoch_lengths: Callable[[int], Sequence[int]] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.lengths = list(lengths)
        # What buffers are sorted by (Utterance.sort_key); the budget still counts `lengths`.
        self.sort_keys = list(sort_keys) if sort_keys is not None else None
        self.token_budget = token_budget
        self.max_utterances = max_utterances
        self.sort_buffer = sort_buffer
        self.seed = seed
        self.groups = [list(g) for g in groups] if groups is not None else [list(range(len(self.lengths)))]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.groups)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        # Lengths that change per epoch (speed perturbation); the budget then counts those.
        self.epoch_lengths = epoch_lengths
        self.epoch = 0
        self.start = 0

    def _rng(self, epoch: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + epoch)

    def epoch_order(self, epoch: int) -> list[int]:
        rng = self._rng(epoch)
        order: list[int] = []
        for group, weight in zip(self.groups, self.weights):
            whole = int(math.floor(weight))
            order.extend(group * whole)
            extra = round((weight - whole) * len(group))
            if extra:
                order.extend(rng.sample(group, extra) if self.shuffle else group[:extra])
        if self.shuffle:
            rng.shuffle(order)
        return order

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`, in order."""
        lengths = self.lengths if self.epoch_lengths is None else list(self.epoch_lengths(epoch))
        batches = token_budget_batches(
            self.epoch_order(epoch),
            lengths,
            token_budget=self.token_budget,
            max_utterances=self.max_utterances,
            sort_buffer=self.sort_buffer if self.shuffle else max(1, len(self.lengths)),
            sort_keys=self.sort_keys,
        )
        if self.shuffle:
            self._rng(epoch).shuffle(batches)
        batches = split_for_ranks(batches, self.world_size)
        per_rank = len(batches) // self.world_size
        return batches[self.rank :: self.world_size][:per_rank]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.start :]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start
