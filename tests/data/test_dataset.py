"""The training dataset and collation: samples exactly as funasr builds them, samples left out with
their reason, padding to fixed shapes, and features computed in loader worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from speech_fixtures import chatml_line, make_corpus, write_jsonl, write_tone

from speechft.data.collate import bucket_size, collate, make_loader
from speechft.data.dataset import Sample, SpeechDataset
from speechft.data.manifest import Skip, read_manifest
from speechft.data.sampler import TokenBatchSampler

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("corpus")
    lines = make_corpus(root / "wav", 6)
    return write_jsonl(root / "train.jsonl", lines), lines


@pytest.fixture(scope="module")
def bundle(tiny_dir: Path):
    from speechft.model.build import load_model

    return load_model(tiny_dir)


def test_samples_match_funasr_data_load_speech(bundle, corpus: tuple[Path, list[dict]]) -> None:
    path, lines = corpus
    utterances, _ = read_manifest(path)
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    funasr_model = bundle.model
    for index, line in enumerate(lines[:3]):
        contents = funasr_model.data_template(line["messages"])
        expected = funasr_model.data_load_speech(contents, bundle.tokenizer, bundle.frontend)
        sample = dataset[index]
        assert sample.input_ids == expected["input_ids"][0].tolist()
        assert sample.labels == expected["labels_ids"].tolist()
        assert sample.audio_start == int(expected["fbank_beg"][0, 0])
        assert sample.audio_tokens == int(expected["fake_token_len"][0, 0])
        torch.testing.assert_close(sample.features, expected["speech"][0])


def test_unusable_audio_is_a_skip_with_its_reason(bundle, tmp_path: Path) -> None:
    import soundfile

    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(399, dtype=np.float32), 16000)
    silent_nan = tmp_path / "nan.wav"
    soundfile.write(silent_nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    tone = write_tone(tmp_path / "tone.wav", 1.0, 300.0)
    lines = [
        chatml_line("missing", tmp_path / "absent.wav", "hi", seconds=1.0),
        chatml_line("short", short, "hi", seconds=0.03),
        chatml_line("nan", silent_nan, "hi", seconds=1.0),
        chatml_line("stale", tone, "hi", seconds=1.5),
        chatml_line("close", tone, "hi", seconds=1.0) | {"speech_length": 100},
    ]
    utterances, _ = read_manifest(write_jsonl(tmp_path / "m.jsonl", lines))
    items = [SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)[index] for index in range(len(utterances))]
    reasons = {item.key: item.reason for item in items if isinstance(item, Skip)}
    assert set(reasons) == {"missing", "short", "nan", "stale"}
    assert "audio unreadable" in reasons["missing"] and "no such file" in reasons["missing"]
    assert reasons["short"] == "audio too short (399 samples)"
    assert "NaN or infinite" in reasons["nan"]
    assert "98 fbank frames long but speech_length says 148" in reasons["stale"]
    assert isinstance(items[-1], Sample)  # 2 frames off: within the resampling tolerance


def test_bucket_size_picks_the_smallest_that_fits() -> None:
    assert bucket_size(7, ()) == 7
    assert bucket_size(7, (8, 16, 32)) == 8
    assert bucket_size(8, (8, 16, 32)) == 8
    assert bucket_size(9, (8, 16, 32)) == 16
    assert bucket_size(40, (8, 16, 32)) == 40  # past the largest: the batch's own length


def test_collate_pads_masks_and_keeps_skips(bundle, corpus: tuple[Path, list[dict]]) -> None:
    path, _ = corpus
    utterances, _ = read_manifest(path)
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    samples = [dataset[0], dataset[1]]
    skip = Skip("gone", "audio unreadable: test", "m.jsonl:9")
    batch = collate([samples[0], skip, samples[1]])
    assert batch.keys == [samples[0].key, samples[1].key] and batch.skipped == [skip]
    width = max(len(s.input_ids) for s in samples)
    assert tuple(batch.input_ids.shape) == tuple(batch.labels.shape) == (2, width)
    for row, sample in enumerate(samples):
        length = len(sample.input_ids)
        assert batch.input_ids[row, :length].tolist() == sample.input_ids
        assert int(batch.attention_mask[row].sum()) == length
        assert batch.labels[row, length:].eq(-100).all()
        assert int(batch.speech_lengths[row]) == sample.features.shape[0]
    assert batch.target_tokens == sum(sum(1 for label in s.labels[1:] if label != -100) for s in samples)
    assert batch.seconds == pytest.approx(sum(s.seconds for s in samples))
    empty = collate([skip])
    assert len(empty) == 0 and empty.skipped == [skip]


def test_loader_pads_to_the_dataset_buckets(bundle, corpus: tuple[Path, list[dict]]) -> None:
    utterances, _ = read_manifest(corpus[0])
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend, speech_buckets=(64,), token_buckets=(128,))
    sampler = TokenBatchSampler([u.batch_tokens for u in utterances], token_budget=400, max_utterances=2, seed=0)
    shapes = {(tuple(b.speech.shape[1:]), b.input_ids.shape[1]) for b in make_loader(dataset, sampler, 0)}
    assert shapes == {((64, 560), 128)}


class _WhereDataset:
    """Records which process computed each item (module level: loader workers import it)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.speech_buckets = dataset.speech_buckets
        self.token_buckets = dataset.token_buckets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        sample.key = str(os.getpid())
        return sample


def test_features_are_computed_in_loader_workers(bundle, corpus: tuple[Path, list[dict]]) -> None:
    utterances, _ = read_manifest(corpus[0])
    dataset = _WhereDataset(SpeechDataset(utterances, bundle.tokenizer, bundle.frontend))
    sampler = TokenBatchSampler([u.batch_tokens for u in utterances], token_budget=400, max_utterances=3, seed=0)
    pids = {key for batch in make_loader(dataset, sampler, 1) for key in batch.keys}
    assert pids and str(os.getpid()) not in pids
