"""Loader workers that persist across epochs: the dither a sample gets depends on its place in the
run (epoch, batch, place in the batch), not on which worker made it, how many workers there are or
how long they have lived, so a mid-epoch resume reads the same features."""

from __future__ import annotations

from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

from speechft.data.collate import make_loader
from speechft.data.dataset import SpeechDataset
from speechft.data.manifest import read_manifest
from speechft.data.sampler import TokenBatchSampler

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def dithered(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechDataset, list[int]]:
    from speechft.model.build import build_frontend, load_model

    root = tmp_path_factory.mktemp("loader")
    utterances, _ = read_manifest(write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 4)))
    bundle = load_model(tiny_dir)
    dataset = SpeechDataset(utterances, bundle.tokenizer, build_frontend(bundle.config, dither=1.0))
    return dataset, [u.batch_tokens for u in utterances]


def _sampler(lengths: list[int]) -> TokenBatchSampler:
    # Every utterance twice per epoch: a copy drawn twice must still get its own dither.
    return TokenBatchSampler(lengths, token_budget=10_000, max_utterances=1, seed=3, groups=[list(range(len(lengths)))], weights=[2.0])


def _epoch(loader, sampler: TokenBatchSampler, epoch: int, start: int = 0) -> list[tuple[str, torch.Tensor]]:
    sampler.set_epoch(epoch, start=start)
    return [(batch.keys[0], batch.speech[0]) for batch in loader]


def _same(ours: list[tuple[str, torch.Tensor]], theirs: list[tuple[str, torch.Tensor]]) -> bool:
    return len(ours) == len(theirs) and all(a == b and torch.equal(x, y) for (a, x), (b, y) in zip(ours, theirs))


def test_persistent_workers_give_every_epoch_and_resume_the_same_features(dithered: tuple[SpeechDataset, list[int]]) -> None:
    dataset, lengths = dithered
    sampler = _sampler(lengths)
    loader = make_loader(dataset, sampler, 2, torch.Generator().manual_seed(0), seed=7)
    first, second = _epoch(loader, sampler, 0), _epoch(loader, sampler, 1)
    assert loader._iterator is not None and loader._iterator._workers  # the epoch-0 workers served epoch 1
    assert len(first) == 2 * len(lengths)
    # Dither differs between epochs and between the two copies of an utterance in one epoch.
    copies = {}
    for key, features in first:
        copies.setdefault(key, []).append(features)
    assert all(not torch.equal(*pair) for pair in copies.values())

    # A fresh loader (a resumed run), one worker, starting at batch 3 of epoch 1: the same features.
    other_sampler = _sampler(lengths)
    resumed = make_loader(dataset, other_sampler, 1, torch.Generator().manual_seed(1), seed=7)
    assert _same(_epoch(resumed, other_sampler, 1, start=3), second[3:])
    # Another seed draws other dither.
    reseeded = make_loader(dataset, other_sampler, 1, torch.Generator().manual_seed(0), seed=8)
    assert not _same(_epoch(reseeded, other_sampler, 0), first)
