"""Validation shared across ranks: each rank decodes disjoint whole batches, the edit counts are
summed, and the result equals one rank's; under FSDP2 the weights are gathered once per pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

WORKER = Path(__file__).with_name("validation_ranks.py")


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_disjoint_cover_every_batch_and_balance_the_cost(world_size: int) -> None:
    from speechft.train.validation import shard_batches

    costs = [5, 40, 40, 12, 90, 7, 33, 61, 2, 18, 75, 30, 44]
    shards = [shard_batches(costs, rank, world_size) for rank in range(world_size)]
    assert sorted(p for shard in shards for p in shard) == list(range(len(costs)))
    assert all(shard == sorted(shard) for shard in shards)
    loads = [sum(costs[p] for p in shard) for shard in shards]
    # Costliest first to the least loaded rank: no rank exceeds the mean by more than one batch.
    assert max(loads) <= sum(costs) / world_size + max(costs)


def test_a_rank_without_batches_gets_none() -> None:
    from speechft.train.validation import shard_batches

    assert [shard_batches([3], rank, 4) for rank in range(4)] == [[0], [], [], []]
    assert [shard_batches([], rank, 2) for rank in range(2)] == [[], []]


def test_summed_edit_counts_give_the_whole_sets_error_rate() -> None:
    from speechft.train.validation import error_counts, validation_cer

    references = ["今天是2023年", "hello world", "甚至出现交易", "The CAT sat", "天气不错"]
    hypotheses = ["今天是二零二三年", "hello word", "甚至出现交通吧", "the cat sat down", ""]
    halves = error_counts(references[:2], hypotheses[:2]) + error_counts(references[2:], hypotheses[2:])
    assert halves.error_rate == validation_cer(references, hypotheses)
    assert 0 < halves.error_rate < 1


def test_validation_batches_are_sorted_by_length_and_the_same_for_any_world() -> None:
    import torch

    from speechft.data.dataset import Sample
    from speechft.train.validation import validation_batches

    frames = [30, 10, 50, 20, 40]
    samples = [Sample(f"u{i}", torch.zeros(n, 4), [], [], 0, 0, 0.0, "", "", "") for i, n in enumerate(frames)]
    assert validation_batches(samples, 2) == [[1, 3], [0, 4], [2]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("validation-data")
    train = write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 3))
    # 7 utterances of different lengths in batches of 2: 4 batches for 2 ranks; 1 utterance: rank 1 has nothing.
    seven = write_jsonl(root / "seven.jsonl", make_corpus(root / "wav-val", 7, prefix="val"))
    one = write_jsonl(root / "one.jsonl", make_corpus(root / "wav-one", 1, prefix="one"))
    return train, seven, one


def _two_ranks(tiny_dir: Path, data: tuple[Path, Path, Path], output: Path, strategies: str) -> dict[str, list[dict]]:
    from speechft.train.distributed import free_port

    train, seven, one = data
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}", str(WORKER)]
    result = subprocess.run(
        [*command, str(tiny_dir), str(train), str(output), strategies, str(seven), str(one)], capture_output=True, text=True, timeout=240, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(output.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_validate_as_one_rank_with_ddp_and_fsdp(tiny_dir: Path, data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from validation_ranks import validate_files
    finally:
        sys.path.remove(str(WORKER.parent))
    from speechft.train.distributed import world_session

    train, seven, one = data
    with world_session("cpu") as world:
        single = validate_files(tiny_dir, train, [seven, one], world)
    assert [len(result["examples"]) for result in single[:2]] == [7, 1]
    shared = _two_ranks(tiny_dir, data, tmp_path / "two.json", "ddp,fsdp")
    for strategy, results in shared.items():
        for ours, reference in zip(results[:2], single[:2]):
            # Whole batches are dealt out, so every utterance decodes exactly as on one rank.
            assert [tuple(example) for example in ours["examples"]] == [tuple(example) for example in reference["examples"]], strategy
            assert ours["cer"] == reference["cer"], strategy
            assert ours["loss"] == pytest.approx(reference["loss"], rel=1e-6), strategy
        assert results[2]["finite"], strategy
    # One all-gather per FSDP unit (2 LLM layers, encoder, adaptor, root) per pass, however many tokens are decoded.
    assert [result["all_gathers"] for result in shared["fsdp"][:2]] == [5, 5]
    assert shared["fsdp"][2]["layer_rows"] * 2 == shared["fsdp"][2]["full_rows"]  # sharded again for training
