"""A run's data: the training files indexed and filtered (lines stay on disk, see
:mod:`speechft.data.index`), the validation utterances, the dataset and this rank's sampler, built
once from the request and the model's tokenizer and frontend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechft.data.dataset import Sample, SpeechDataset
from speechft.data.index import ManifestIndex, filter_index_lengths, key_hash
from speechft.data.manifest import Skip, TrainSource, Utterance, filter_lengths, read_manifest
from speechft.data.remote import url_cache_dir
from speechft.data.sampler import TokenBatchSampler
from speechft.errors import InputError
from speechft.model.build import ModelBundle, build_frontend
from speechft.train import distributed as dist_tools
from speechft.train import holdout
from speechft.train.config import TrainConfig
from speechft.train.run_dir import SKIPPED_FILE, TrainRequest


@dataclass
class TrainData:
    dataset: SpeechDataset
    sampler: TokenBatchSampler
    val_samples: list[Sample]
    val_from_train: bool  # held out of the training files (and not trained on)
    skipped: list[Skip] = field(default_factory=list)  # training lines and utterances
    hours: float = 0.0
    corpus_utterances: int = 0  # distinct keys of the training files, skipped ones included
    val_skipped: list[Skip] = field(default_factory=list)  # lines of the --val file
    val_source: str = "none"  # held-out | the --val path | none
    validation: str = ""  # where the validation utterances came from, in words


def read_sources(sources: Sequence[TrainSource], tokenizer: Any, config: TrainConfig) -> tuple[ManifestIndex, list[float], list[Skip], int]:
    """(index of the usable lines of every file within the length limits, each file's weight,
    skipped lines, distinct keys of all lines, skipped ones included)."""
    index, bad = ManifestIndex.build([source.path for source in sources], tokenizer)
    bad_hashes = np.array([key_hash(skip.key) for skip in bad], dtype=np.uint64)
    corpus_utterances = holdout.distinct_keys(np.concatenate([index.key_hashes, bad_hashes]))
    kept, too_long = filter_index_lengths(index, max_sample_tokens=config.data.max_sample_tokens, min_speech_frames=config.data.min_speech_frames)
    for number, source in enumerate(sources):
        if not np.any(kept.sources == number):
            unusable = sum(1 for skip in bad if skip.where.startswith(f"{source.path}:"))
            outside = sum(1 for skip in too_long if skip.where.startswith(f"{source.path}:"))
            raise InputError(f"{source.path}: every line was skipped ({unusable} unusable, {outside} outside the length limits)")
    return kept, [source.weight for source in sources], bad + too_long, corpus_utterances


def _read_validation(path: Path, tokenizer: Any, config: TrainConfig) -> tuple[list[Utterance], list[Skip]]:
    """The --val file through the training data's length limits; its first `max_utterances`."""
    read, bad = read_manifest(path, tokenizer)
    kept, outside = filter_lengths(read, max_sample_tokens=config.data.max_sample_tokens, min_speech_frames=config.data.min_speech_frames)
    if not kept:
        raise InputError(f"--val {path}: every line is outside the length limits (data.max_sample_tokens, data.min_speech_frames)")
    return kept[: config.validation.max_utterances or None], bad + outside


def prepare_data(request: TrainRequest, bundle: ModelBundle, world: dist_tools.World | None = None) -> TrainData:
    """Manifests -> training dataset + sampler, and the fixed validation samples (features at dither 0).

    Without --val the validation utterances are a held-out slice of the training files (see
    :mod:`speechft.train.holdout`), removed from training."""
    config = request.config
    index, weights, skipped, corpus_utterances = read_sources(request.train, bundle.tokenizer, config)
    if request.val is not None:
        val_utterances, val_skipped = _read_validation(request.val, bundle.tokenizer, config)
    else:
        index, val_utterances = holdout.hold_out(index, config.validation)
        val_skipped = []
    train_frontend = build_frontend(bundle.config, dither=config.data.dither)
    cache = None if request.dry_run else url_cache_dir(request.output_dir, config.data.url_cache)
    dataset = SpeechDataset(
        index, bundle.tokenizer, train_frontend, speech_buckets=config.data.speech_buckets, token_buckets=config.data.token_buckets, url_cache_dir=cache
    )
    sampler = TokenBatchSampler(
        index.batch_tokens,
        token_budget=config.data.token_budget,
        max_utterances=config.data.max_utterances_per_batch,
        sort_buffer=config.data.sort_buffer,
        sort_keys=index.sort_keys,
        seed=config.seed,
        groups=[np.flatnonzero(index.sources == number) for number in range(len(request.train))],
        weights=weights,
        rank=world.rank if world else 0,
        world_size=world.world_size if world else 1,
    )
    val_dataset = SpeechDataset(val_utterances, bundle.tokenizer, bundle.frontend, url_cache_dir=cache)
    val_samples: list[Sample] = []
    for position in range(len(val_dataset)):
        item = val_dataset[position]
        if isinstance(item, Skip):
            # A held-out utterance is training data: its failure counts against the training files.
            (val_skipped if request.val is not None else skipped).append(item)
        else:
            val_samples.append(item)
    if request.val is not None and not val_samples:
        reasons = "; ".join(sorted({skip.reason for skip in val_skipped})[:3])
        raise InputError(f"--val {request.val}: no utterance could be used ({reasons})")
    hours = index.seconds / 3600.0
    val_source = str(request.val) if request.val is not None else "held-out" if val_utterances else "none"
    validation = holdout.describe_validation(request.val, config.validation, len(val_utterances), len(val_samples), len(val_skipped), SKIPPED_FILE)
    return TrainData(dataset, sampler, val_samples, request.val is None, skipped, hours, corpus_utterances, val_skipped, val_source, validation)
