"""Token-budget batches (UPSTREAM.md §2): bucketed by length, shuffled by (seed, epoch), sharded by
`rank`/`world_size` as plain arguments so sharding is testable without a process group, resumable
mid-epoch, on the same or on a different number of ranks.

Planning is vectorised with numpy, so an epoch of ten million utterances is planned in seconds. A
plan is held as two arrays (:class:`Plan`): the utterance indices of every batch one after the
other, and where each batch starts. The shuffles draw from numpy's generator seeded by (seed,
epoch), so the batches differ from those of the earlier list-based planner (Python's `random`); the
properties are the same: deterministic per (seed, epoch), every utterance once per epoch over the
ranks, the same number of batches on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Below this many sort buffers a plain loop over one buffer beats stepping all buffers together.
_FEW_BUFFERS = 16


@dataclass(frozen=True)
class Plan:
    """Batches as `items[bounds[k]:bounds[k + 1]]` for batch k."""

    items: np.ndarray  # utterance indices, batch after batch
    bounds: np.ndarray  # int64, len(batches) + 1

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)

    def batch(self, position: int) -> list[int]:
        return self.items[self.bounds[position] : self.bounds[position + 1]].tolist()

    def batches(self) -> list[list[int]]:
        return [self.batch(position) for position in range(len(self))]

    def select(self, positions: np.ndarray) -> Plan:
        """The batches at `positions`, in that order."""
        sizes = self.sizes[positions]
        bounds = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        gather = np.repeat(self.bounds[positions] - bounds[:-1], sizes) + np.arange(bounds[-1], dtype=np.int64)
        return Plan(self.items[gather], bounds)

    def tail(self, start: int) -> Plan:
        """The batches after the first `start`."""
        start = min(start, len(self))
        return Plan(self.items[self.bounds[start] :], self.bounds[start:] - self.bounds[start])

    @classmethod
    def of(cls, batches: Sequence[Sequence[int]]) -> Plan:
        bounds = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum([len(batch) for batch in batches], out=bounds[1:])
        items = np.fromiter((index for batch in batches for index in batch), dtype=np.int64, count=int(bounds[-1]))
        return cls(items, bounds)


def _sort_ranks(keys: Sequence[Any] | np.ndarray, count: int) -> np.ndarray:
    """Each utterance's rank in the order of `keys` (numbers, or tuples compared left to right): a
    non-negative integer per utterance, equal for equal keys, small enough that rank x count fits int64."""
    values = np.asarray(keys)
    if len(values) != count:
        raise ValueError(f"{len(values)} sort keys for {count} utterances")
    if values.ndim == 1 and values.dtype.kind in "iu" and count and values.min() >= 0 and int(values.max()) < (1 << 62) // max(count, 1):
        return values.astype(np.int64)  # small non-negative integers order as they are: no sort needed
    columns = values.reshape(count, -1)
    order = np.lexsort(columns.T[::-1]) if columns.shape[1] > 1 else np.argsort(columns[:, 0], kind="stable")
    ranks = np.empty(count, dtype=np.int64)
    # Equal keys share a rank, so the tie-break below (the utterance index) decides between them.
    ordered = columns[order]
    new = np.ones(count, dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    ranks[order] = np.cumsum(new) - 1
    return ranks


def _cut_rows(lengths: np.ndarray, token_budget: int, max_utterances: int) -> np.ndarray:
    """Batch starts (bool, the shape of `lengths`) of the greedy cut of every row at once: a batch
    grows while `longest x count <= token_budget` and `count <= max_utterances`."""
    rows, width = lengths.shape
    starts = np.zeros((rows, width), dtype=bool)
    if rows < _FEW_BUFFERS:
        for row in range(rows):
            longest = count = 0
            for column in range(width):
                length = int(lengths[row, column])
                grown = max(longest, length)
                if count == 0 or grown * (count + 1) > token_budget or count >= max_utterances:
                    starts[row, column], longest, count = True, length, 1
                else:
                    longest, count = grown, count + 1
        return starts
    longest = np.zeros(rows, dtype=np.int64)
    count = np.zeros(rows, dtype=np.int64)
    for column in range(width):
        length = lengths[:, column]
        grown = np.maximum(longest, length)
        new = (count == 0) | (grown * (count + 1) > token_budget) | (count >= max_utterances)
        starts[:, column] = new
        longest = np.where(new, length, grown)
        count = np.where(new, 1, count + 1)
    return starts


def plan_batches(order: np.ndarray, lengths: np.ndarray, sort_ranks: np.ndarray, *, token_budget: int, max_utterances: int, sort_buffer: int) -> Plan:
    """Cut `order` into batches: each buffer of `sort_buffer` indices is sorted by `sort_ranks` (then
    index) and cut greedily by the budget, `longest` being the batch's largest `lengths` value."""
    total = len(order)
    if total == 0:
        return Plan(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    width = min(sort_buffer, total)
    rows = -(-total // width)
    size = max(len(lengths), 1)
    # One sortable number per entry: sort rank, then index. Padding sorts last in the final buffer,
    # so the first `total` entries of the sorted matrix are exactly the real ones.
    composite = np.full(rows * width, np.iinfo(np.int64).max, dtype=np.int64)
    np.multiply(sort_ranks[order], size, out=composite[:total])
    composite[:total] += order
    composite.reshape(rows, width).sort(axis=1)
    items = (composite[:total] % size).astype(order.dtype)
    del composite
    padded = np.zeros(rows * width, dtype=np.int64)
    padded[:total] = lengths[items]
    starts = _cut_rows(padded.reshape(rows, width), token_budget, max_utterances).ravel()[:total]
    return Plan(items, np.append(np.flatnonzero(starts), total).astype(np.int64))


def split_plan(plan: Plan, world_size: int) -> Plan:
    """`plan` made a multiple of `world_size` batches long by halving the largest ones (the later
    one of equals), so every rank gets the same number and no utterance is dropped or repeated. Only
    when too few batches hold two or more utterances are the last few left out (the caller drops them)."""
    bounds = plan.bounds
    while (len(bounds) - 1) % world_size:
        sizes = np.diff(bounds)
        if len(sizes) == 0:
            break
        largest = len(sizes) - 1 - int(np.argmax(sizes[::-1]))
        if sizes[largest] < 2:
            break
        bounds = np.insert(bounds, largest + 1, bounds[largest] + sizes[largest] // 2)
    return Plan(plan.items, bounds)


def split_for_ranks(batches: list[list[int]], world_size: int) -> list[list[int]]:
    """:func:`split_plan` over lists of indices."""
    return split_plan(Plan.of(batches), world_size).batches()


def token_budget_batches(
    order: Sequence[int], lengths: Sequence[int], *, token_budget: int, max_utterances: int, sort_buffer: int, sort_keys: Sequence[Any] | None = None
) -> list[list[int]]:
    """:func:`plan_batches` over lists: buffers sorted by `sort_keys` (default: `lengths`)."""
    length_array = np.asarray(lengths, dtype=np.int64)
    ranks = _sort_ranks(length_array if sort_keys is None else sort_keys, len(length_array))
    plan = plan_batches(
        np.asarray(order, dtype=np.int64), length_array, ranks, token_budget=token_budget, max_utterances=max_utterances, sort_buffer=sort_buffer
    )
    return plan.batches()


class TokenBatchSampler:
    """Deterministic token-budget batches for one rank of `world_size`, resumable mid-epoch.

    Each epoch draws, for every source group, `weight x size` utterances (whole copies plus a
    seeded random part), shuffles them by (seed, epoch), buckets by length and shuffles the
    batches: the epoch's *global* batches, the same for any number of ranks. They are dealt in
    rounds: rank r takes batches r, r + world_size, ...; every rank gets the same count (the
    largest batches are halved until the count divides evenly) so ranks step together and, over
    the ranks, each epoch covers every utterance exactly once.

    The position in an epoch is global: `set_epoch(epoch, start, segments)` resumes after `start`
    global batches dealt to this `world_size`, after the earlier `segments` ((world size, global
    batches consumed) of runs on other numbers of ranks). What is left is re-dealt to this world
    size, so a run resumed on fewer or more ranks trains every utterance of the epoch once.

    `lengths` is what the budget counts per utterance; `epoch_lengths(epoch)`, when given, replaces
    it for that epoch (lengths that change per epoch); buffers are sorted by `sort_keys` (default:
    the lengths).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        *,
        token_budget: int,
        max_utterances: int,
        sort_buffer: int = 1024,
        seed: int = 0,
        groups: Sequence[Sequence[int] | np.ndarray] | None = None,
        weights: Sequence[float] | None = None,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        sort_keys: Sequence[Any] | np.ndarray | None = None,
        epoch_lengths: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.sort_ranks = _sort_ranks(sort_keys, len(self.lengths)) if sort_keys is not None else None
        self.epoch_lengths = epoch_lengths
        self.token_budget = token_budget
        self.max_utterances = max_utterances
        self.sort_buffer = sort_buffer
        self.seed = seed
        # Utterance indices in 4 bytes while they fit: half the memory of an epoch's plan.
        index_type = np.int32 if len(self.lengths) < 2**31 else np.int64
        everything = np.arange(len(self.lengths), dtype=index_type)
        self.groups = [np.asarray(group, dtype=index_type) for group in groups] if groups is not None else [everything]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.groups)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        # Lengths that change per epoch (speed perturbation); the budget then counts those.
        self.epoch_lengths = epoch_lengths
        self.epoch = 0
        self.start = 0
        self.segments: tuple[tuple[int, int], ...] = ()
        self._cached: tuple[Any, Plan] | None = None

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def epoch_order(self, epoch: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The utterances drawn for `epoch` (weights applied), shuffled."""
        rng = rng or self._rng(epoch)
        parts = []
        for group, weight in zip(self.groups, self.weights):
            whole = int(math.floor(weight))
            parts.append(np.tile(group, whole))
            extra = round((weight - whole) * len(group))
            if extra:
                parts.append(rng.choice(group, extra, replace=False) if self.shuffle else group[:extra])
        order = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return rng.permutation(order) if self.shuffle else order

    def global_plan(self, epoch: int) -> Plan:
        """Every batch of `epoch` over all ranks, before they are dealt (independent of the world size)."""
        rng = self._rng(epoch)
        lengths = self.lengths if self.epoch_lengths is None else np.asarray(self.epoch_lengths(epoch), dtype=np.int64)
        if len(lengths) != len(self.lengths):
            raise ValueError(f"epoch_lengths({epoch}) gave {len(lengths)} lengths for {len(self.lengths)} utterances")
        ranks = self.sort_ranks if self.sort_ranks is not None else _sort_ranks(lengths, len(lengths))
        plan = plan_batches(
            self.epoch_order(epoch, rng),
            lengths,
            ranks,
            token_budget=self.token_budget,
            max_utterances=self.max_utterances,
            sort_buffer=self.sort_buffer if self.shuffle else max(1, len(self.lengths)),
        )
        return plan.select(rng.permutation(len(plan))) if self.shuffle else plan

    def dealt_plan(self, epoch: int, start: int = 0, segments: Sequence[tuple[int, int]] = ()) -> Plan:
        """The global batches left to deal to this world size, `start` of them already consumed (cached)."""
        cache_key = (epoch, start, tuple(map(tuple, segments)))
        if self._cached is not None and self._cached[0] == cache_key:
            return self._cached[1]
        plan = self.global_plan(epoch)
        for world_size, consumed in [*segments, (self.world_size, start)]:
            plan = split_plan(plan, world_size).tail(consumed)
        plan = split_plan(plan, self.world_size)
        self._cached = (cache_key, plan)
        return plan

    def rank_positions(self, plan: Plan) -> np.ndarray:
        """Positions in `plan` of this rank's batches."""
        per_rank = len(plan) // self.world_size
        return np.arange(self.rank, per_rank * self.world_size, self.world_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of a whole `epoch`, in order."""
        plan = self.dealt_plan(epoch)
        return plan.select(self.rank_positions(plan)).batches()

    def batches_per_rank(self, epoch: int) -> int:
        """How many batches each rank trains in a whole `epoch`."""
        return len(self.dealt_plan(epoch)) // self.world_size

    def set_epoch(self, epoch: int, start: int = 0, segments: Sequence[tuple[int, int]] = ()) -> None:
        self.epoch, self.start, self.segments = epoch, start, tuple((int(w), int(c)) for w, c in segments)

    def epoch_global_batches(self) -> int:
        """Global batches of the current epoch's deal to this world size: the consumed `start`
        and those the ranks are still to train."""
        return self.start + len(self) * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.dealt_plan(self.epoch, self.start, self.segments)
        for position in self.rank_positions(plan):
            yield plan.batch(int(position))

    def __len__(self) -> int:
        return len(self.dealt_plan(self.epoch, self.start, self.segments)) // self.world_size
