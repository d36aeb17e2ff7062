"""A run's data: the training files read and filtered, the validation utterances, the dataset and
this rank's sampler, built once from the request and the model's tokenizer and frontend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechft import console
from speechft.data.augment import Augmentation, SpeedLengths, scan_noise_dir
from speechft.data.dataset import Sample, SpeechDataset
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


def read_sources(sources: Sequence[TrainSource], tokenizer: Any, config: TrainConfig) -> tuple[list[Utterance], list[list[int]], list[float], list[Skip]]:
    """(utterances of every file, their indices per file, each file's weight, skipped lines)."""
    utterances: list[Utterance] = []
    groups: list[list[int]] = []
    weights: list[float] = []
    skipped: list[Skip] = []
    for source in sources:
        read, bad = read_manifest(source.path, tokenizer)
        kept, too_long = filter_lengths(read, max_sample_tokens=config.data.max_sample_tokens, min_speech_frames=config.data.min_speech_frames)
        skipped += bad + too_long
        if not kept:
            raise InputError(f"{source.path}: every line was skipped ({len(bad)} unusable, {len(too_long)} outside the length limits)")
        groups.append(list(range(len(utterances), len(utterances) + len(kept))))
        weights.append(source.weight)
        utterances += kept
    return utterances, groups, weights, skipped


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
    utterances, groups, weights, skipped = read_sources(request.train, bundle.tokenizer, config)
    corpus_utterances = len({u.key for u in utterances} | {s.key for s in skipped})
    if request.val is not None:
        val_utterances, val_skipped = _read_validation(request.val, bundle.tokenizer, config)
    else:
        utterances, groups, val_utterances = holdout.hold_out(utterances, groups, config.validation)
        val_skipped = []
    train_frontend = build_frontend(bundle.config, dither=config.data.dither)
    cache = None if request.dry_run else url_cache_dir(request.output_dir, config.data.url_cache)
    augmentation = augmentation_for(config, announce=world is None or world.is_main)
    dataset = SpeechDataset(
        utterances,
        bundle.tokenizer,
        train_frontend,
        speech_buckets=config.data.speech_buckets,
        token_buckets=config.data.token_buckets,
        url_cache_dir=cache,
        augmentation=augmentation,
    )
    speed_lengths = None
    if augmentation.perturbs_speed:
        speed_lengths = SpeedLengths(
            np.array([u.speech_frames for u in utterances]), np.array([u.text_tokens for u in utterances]), augmentation.speed_factors, config.seed
        )
    sampler = TokenBatchSampler(
        [u.batch_tokens for u in utterances],
        token_budget=config.data.token_budget,
        max_utterances=config.data.max_utterances_per_batch,
        sort_buffer=config.data.sort_buffer,
        sort_keys=[u.sort_key for u in utterances],
        seed=config.seed,
        groups=groups,
        weights=weights,
        rank=world.rank if world else 0,
        world_size=world.world_size if world else 1,
        epoch_lengths=speed_lengths,
    )
    val_dataset = SpeechDataset(val_utterances, bundle.tokenizer, bundle.frontend, url_cache_dir=cache)
    val_samples: list[Sample] = []
    for index in range(len(val_dataset)):
        item = val_dataset[index]
        if isinstance(item, Skip):
            # A held-out utterance is training data: its failure counts against the training files.
            (val_skipped if request.val is not None else skipped).append(item)
        else:
            val_samples.append(item)
    if request.val is not None and not val_samples:
        reasons = "; ".join(sorted({skip.reason for skip in val_skipped})[:3])
        raise InputError(f"--val {request.val}: no utterance could be used ({reasons})")
    hours = sum(u.seconds for u in utterances) / 3600.0
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
