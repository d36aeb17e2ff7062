"""Token-budget batches and the sampler: the budget, determinism per (seed, epoch), sharding by
`rank`/`world_size` without a process group, mid-epoch resume, source weights and sort keys."""

from __future__ import annotations

import numpy as np
import pytest

from speechft.data.manifest import Utterance
from speechft.data.sampler import TokenBatchSampler, split_for_ranks, token_budget_batches


def test_batches_respect_the_budget() -> None:
    lengths = [100, 900, 300, 300, 50, 700, 200, 120]
    batches = token_budget_batches(list(range(len(lengths))), lengths, token_budget=1000, max_utterances=3, sort_buffer=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert max(lengths[i] for i in batch) * len(batch) <= 1000 or len(batch) == 1


def _sampler(**kwargs: object) -> TokenBatchSampler:
    lengths = [50 + (i * 37) % 400 for i in range(40)]
    return TokenBatchSampler(lengths, token_budget=1200, max_utterances=4, sort_buffer=16, seed=3, **kwargs)  # type: ignore[arg-type]


def test_sampler_is_deterministic_and_reshuffles_per_epoch() -> None:
    first, again = _sampler(), _sampler()
    assert first.epoch_batches(0) == again.epoch_batches(0)
    assert first.epoch_batches(0) != first.epoch_batches(1)
    assert sorted(i for b in first.epoch_batches(1) for i in b) == list(range(40))


def test_sampler_shards_disjointly_by_rank() -> None:
    shards = [_sampler(rank=rank, world_size=2).epoch_batches(0) for rank in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for shard in shards for b in shard for i in b]
    assert len(seen) == len(set(seen))
    everything = _sampler().epoch_batches(0)
    assert len(seen) >= sum(len(b) for b in everything) - max(len(b) for b in everything)
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        _sampler(rank=2, world_size=2)


def test_sampler_resumes_mid_epoch() -> None:
    sampler = _sampler()
    sampler.set_epoch(2, start=3)
    assert list(sampler) == sampler.epoch_batches(2)[3:]
    assert len(sampler) == len(sampler.epoch_batches(2)) - 3
    assert (sampler.seed, sampler.epoch, sampler.start) == (3, 2, 3)


def test_sampler_weights_replay_a_fraction() -> None:
    lengths = [100] * 30
    sampler = TokenBatchSampler(lengths, token_budget=1000, max_utterances=10, seed=0, groups=[list(range(20)), list(range(20, 30))], weights=[1.0, 0.2])
    drawn = [i for b in sampler.epoch_batches(0) for i in b]
    assert sum(1 for i in drawn if i < 20) == 20
    assert sum(1 for i in drawn if i >= 20) == 2
    other = [i for b in sampler.epoch_batches(1) for i in b if i >= 20]
    assert len(other) == 2


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_cover_each_epoch_once_with_equal_batch_counts(world_size: int, seed: int) -> None:
    lengths = [50 + (index * 37) % 400 for index in range(101)]
    for epoch in range(3):
        shards = [
            TokenBatchSampler(lengths, token_budget=900, max_utterances=4, sort_buffer=16, seed=seed, rank=rank, world_size=world_size).epoch_batches(epoch)
            for rank in range(world_size)
        ]
        assert len({len(shard) for shard in shards}) == 1, [len(shard) for shard in shards]
        seen = sorted(index for shard in shards for batch in shard for index in batch)
        assert seen == list(range(len(lengths)))  # disjoint and complete


def test_split_for_ranks_only_halves_batches() -> None:
    batches = [[0, 1, 2, 3], [4], [5, 6]]
    split = split_for_ranks(batches, 4)
    assert len(split) == 4 and sorted(i for b in split for i in b) == list(range(7))
    assert split_for_ranks([[0], [1], [2]], 2) == [[0], [1], [2]]  # nothing to halve: caller drops one


def test_sort_keys_order_buffers_and_the_budget_still_counts_lengths() -> None:
    def utterance(frames: int, tokens: int) -> Utterance:
        return Utterance("k", "a.wav", "s", "p", "", "t", frames, tokens, "here")

    # Same LFR frame count (ceil(frames / 6)), transcripts long and short: sorting by the sum
    # interleaves them, sorting by (LFR frames, tokens) pairs like with like.
    utterances = [utterance(600, 1), utterance(595, 7), utterance(599, 4), utterance(595, 10)]
    assert len({u.sort_key[0] for u in utterances}) == 1
    lengths = [u.batch_tokens for u in utterances]
    by_sum = token_budget_batches([0, 1, 2, 3], lengths, token_budget=10_000, max_utterances=2, sort_buffer=4)
    by_key = token_budget_batches([0, 1, 2, 3], lengths, token_budget=10_000, max_utterances=2, sort_buffer=4, sort_keys=[u.sort_key for u in utterances])
    assert by_sum == [[0, 1], [2, 3]]  # transcripts of 1 and 7 tokens, then 4 and 10
    assert by_key == [[0, 2], [1, 3]]  # 1 and 4, then 7 and 10
    # The budget is longest x count over `lengths`, whatever the order.
    tight = token_budget_batches([0, 1, 2, 3], lengths, token_budget=1210, max_utterances=10, sort_buffer=4, sort_keys=[u.sort_key for u in utterances])
    assert all(max(lengths[i] for i in batch) * len(batch) <= 1210 for batch in tight)
    sampler = TokenBatchSampler(lengths, token_budget=10_000, max_utterances=2, seed=3, sort_keys=[u.sort_key for u in utterances])
    assert sorted(map(sorted, sampler.epoch_batches(0))) == [[0, 2], [1, 3]]


def _world(world_size: int, **kwargs: object) -> list[TokenBatchSampler]:
    lengths = [50 + (index * 37) % 400 for index in range(203)]
    return [
        TokenBatchSampler(lengths, token_budget=900, max_utterances=4, sort_buffer=16, seed=5, rank=rank, world_size=world_size, **kwargs)  # type: ignore[arg-type]
        for rank in range(world_size)
    ]


def _rounds(samplers: list[TokenBatchSampler], epoch: int, start: int, segments: list[tuple[int, int]], rounds: int | None) -> list[list[int]]:
    """What the ranks train in `rounds` steps (all of the rest: None) from a global position."""
    trained = []
    for sampler in samplers:
        sampler.set_epoch(epoch, start=start, segments=segments)
        trained += list(sampler)[:rounds]
    return trained


@pytest.mark.parametrize("worlds", [(2, 1), (1, 2), (8, 7), (3, 5, 2), (4, 4)])
def test_a_mid_epoch_position_is_global_and_the_rest_is_redealt_to_another_world_size(worlds: tuple[int, ...]) -> None:
    trained: list[list[int]] = []
    segments: list[tuple[int, int]] = []
    for number, world_size in enumerate(worlds):
        samplers = _world(world_size)
        last = number == len(worlds) - 1
        counts = {len(sampler.dealt_plan(1, 0, segments)) // world_size for sampler in samplers}
        assert len(counts) == 1  # every rank the same number of batches
        steps = None if last else 3
        trained += _rounds(samplers, 1, 0, segments, steps)
        if not last:
            segments.append((world_size, 3 * world_size))
    seen = sorted(index for batch in trained for index in batch)
    assert seen == list(range(203))  # every utterance of the epoch exactly once
    if len(set(worlds)) == 1:  # the same world size throughout: the batches of an uninterrupted epoch
        whole = [batch for sampler in _world(worlds[0]) for batch in sampler.epoch_batches(1)]
        assert sorted(map(sorted, trained)) == sorted(map(sorted, whole))


def test_a_global_start_on_the_same_world_size_continues_each_rank_where_it_stopped() -> None:
    samplers = _world(3)
    for sampler in samplers:
        sampler.set_epoch(2, start=3 * 4)  # four steps of three ranks
        assert list(sampler) == sampler.epoch_batches(2)[4:]
        assert sampler.epoch_global_batches() == 3 * len(sampler.epoch_batches(2))


def test_epoch_lengths_replace_the_lengths_per_epoch() -> None:
    lengths = [100] * 40
    doubled = TokenBatchSampler(lengths, token_budget=1000, max_utterances=100, seed=1, epoch_lengths=lambda epoch: np.full(40, 100 * (epoch + 1)))
    assert {len(batch) for batch in doubled.epoch_batches(0)} == {10}
    assert {len(batch) for batch in doubled.epoch_batches(1)} == {5}
    assert sorted(i for b in doubled.epoch_batches(1) for i in b) == list(range(40))
    wrong = TokenBatchSampler(lengths, token_budget=1000, max_utterances=100, epoch_lengths=lambda epoch: np.ones(3))
    with pytest.raises(ValueError, match=r"epoch_lengths\(0\) gave 3 lengths for 40 utterances"):
        wrong.epoch_batches(0)


def test_many_buffers_cut_as_one_buffer_at_a_time() -> None:
    # The column-wise cut over many buffers gives what the plain loop gives buffer by buffer.
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, 5000)
    keys = rng.integers(0, 50, 5000)
    order = rng.permutation(5000)
    together = token_budget_batches(order.tolist(), lengths.tolist(), token_budget=1500, max_utterances=7, sort_buffer=64, sort_keys=keys.tolist())
    alone = [
        batch
        for begin in range(0, 5000, 64)
        for batch in token_budget_batches(
            order[begin : begin + 64].tolist(), lengths.tolist(), token_budget=1500, max_utterances=7, sort_buffer=64, sort_keys=keys.tolist()
        )
    ]
    assert together == alone
    assert all(max(lengths[i] for i in b) * len(b) <= 1500 or len(b) == 1 for b in together)
