"""A run's data: the training files indexed and filtered (lines stay on disk, see
:mod:`speechft.data.index`), the validation utterances, the dataset and this rank's sampler, built
once from the request and the model's tokenizer and frontend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechft import console
from speechft.data.augment import Augmentation, SpeedLengths, scan_noise_dir
from speechft.data.dataset import Sample, SpeechDataset
from speechft.data.index import ManifestIndex, filter_index_lengths, key_hash
from speechft.data.manifest import Skip, TrainSource, Utterance, filter_lengths, read_manifest
from speechft.data.remote import url_cache_dir
from speechft.data.sampler import TokenBatchSampler
from speechft.errors import ConfigError, InputError
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
    augmentation = augmentation_for(config, announce=world is None or world.is_main)
    dataset = SpeechDataset(
        index,
        bundle.tokenizer,
        train_frontend,
        speech_buckets=config.data.speech_buckets,
        token_buckets=config.data.token_buckets,
        url_cache_dir=cache,
        augmentation=augmentation,
    )
    speed_lengths = None
    if augmentation.perturbs_speed:
        speed_lengths = SpeedLengths(index.speech_frames, index.text_tokens, augmentation.speed_factors, config.seed)
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
        epoch_lengths=speed_lengths,
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


def augmentation_for(config: TrainConfig, *, announce: bool = True) -> Augmentation:
    """The `augment:` section as the dataset applies it; noise files are checked here, once:
    unreadable ones are named (when `announce`) and left out, a directory without any usable
    file is an error."""
    settings = config.augment
    noise: tuple[str, ...] = ()
    if settings.noise_dir:
        directory = Path(settings.noise_dir).expanduser()
        if not directory.is_dir():
            raise ConfigError(f'augment.noise_dir: {directory} is not a directory (set it to a folder of noise audio, or to "" for no noise)')
        scan = scan_noise_dir(directory)
        if scan.unreadable and announce:
            shown = "; ".join(f"{path} ({why})" for path, why in scan.unreadable[:5])
            more = f" and {len(scan.unreadable) - 5} more" if len(scan.unreadable) > 5 else ""
            console.err.print(
                f"[yellow]augment.noise_dir: {len(scan.unreadable)} of {len(scan.unreadable) + len(scan.usable)} noise files cannot be read "
                f"and are not used: {shown}{more}[/]",
                soft_wrap=True,
            )
        if not scan.usable:
            raise ConfigError(f"augment.noise_dir: {directory} holds no readable audio file (wav, flac, ogg, mp3, ...)")
        noise = scan.usable
    return Augmentation(
        seed=config.seed,
        speed_factors=settings.speed_factors if settings.speed else (),
        gain_db=(float(settings.gain_db[0]), float(settings.gain_db[1])),
        noise_files=noise,
        noise_probability=settings.noise_probability,
        noise_snr_db=(float(settings.noise_snr_db[0]), float(settings.noise_snr_db[1])),
        freq_masks=settings.freq_masks if settings.spec_augment else 0,
        freq_mask_width=settings.freq_mask_width,
        time_masks=settings.time_masks if settings.spec_augment else 0,
        time_mask_width=settings.time_mask_width,
    )
