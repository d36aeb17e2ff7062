"""The fine-tuning recipe: setup -> fit -> finish, as plain functions over a small TrainState.

`run_training(request)` is the one entry point (the CLI calls it). It builds the model with the
shared builder, freezes what the profile does not train (frozen modules stay in eval mode and
out of the optimizer), reads the data, and either prints a dry-run report or trains: AdamW over
trainable parameters, gradient accumulation, clipping, warmup scaled to the run length then
decay, bf16 autocast on CUDA / fp32 on CPU, validation loss + CER by batched greedy decoding,
atomic checkpoints, `metrics.jsonl`, and an output directory usable as a model directory.

The same code runs on one process or as one rank of many (`distributed.py`): every rank trains
on its shard of each epoch's batches, rank 0 alone writes files and talks to the terminal, and a
SIGINT/SIGTERM finishes the current step, writes a checkpoint and exits cleanly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from speechft import console
from speechft.data.collate import Batch, collate, make_loader
from speechft.data.dataset import Sample, SpeechDataset
from speechft.data.manifest import Skip, TrainSource, Utterance, filter_lengths, read_manifest
from speechft.data.remote import url_cache_dir
from speechft.data.sampler import TokenBatchSampler
from speechft.errors import ConfigError, InputError, SpeechftError, TrainingError, UsageError
from speechft.model.build import ModelBundle, build_frontend, load_model, module_of, read_state_dict
from speechft.model.inputs import IGNORE_INDEX, embed_inputs
from speechft.train import checkpoint as ckpt
from speechft.train import distributed as dist_tools
from speechft.train import faults, holdout
from speechft.train.config import TrainConfig, ValidationConfig, dump_config, load_config
from speechft.train.faults import METRICS_FILE, PROMPT_FILE, RESOLVED_CONFIG, SKIPPED_FILE, STOPPED_FILE, SUMMARY_FILE
from speechft.train.speed import apply_speed_switches

MODULE_ATTRIBUTES = {"encoder": "audio_encoder", "adaptor": "audio_adaptor", "llm": "llm"}


@dataclass(frozen=True)
class TrainRequest:
    """Everything one run needs; built by the CLI from its options and the profile."""

    model_dir: Path
    train: tuple[TrainSource, ...]
    output_dir: Path
    config: TrainConfig
    val: Path | None = None
    profile: str = "custom"
    dry_run: bool = False
    resume: str = "off"  # off | auto | path to a checkpoint folder
    overwrite: bool = False  # delete an earlier run's files in output_dir first
    output_dir_checked: bool = False  # the launcher has already checked (and cleared) output_dir
    allow_missing: bool = False
    show_progress: bool = True
    command: str = "speechft train"  # as the user typed it, for the resume hint


@dataclass
class TrainState:
    """Counters that, with model/optimizer/scheduler/RNG state, make a run resumable."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    audio_seconds: float = 0.0
    skipped_samples: int = 0  # distinct utterances skipped (a bad file fails again every epoch)
    skipped_keys: list[str] = field(default_factory=list)
    nonfinite_steps: int = 0
    nonfinite_in_a_row: int = 0
    last_validated_step: int = -1
    first_epoch_samples: int = 0  # utterances that went into an update during epoch 0, all ranks


@dataclass
class ModuleCount:
    trainable: int = 0
    frozen: int = 0


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_loss: float | None
    best_val_cer: float | None
    selected: list[str]
    skipped_samples: int
    seconds: float
    stopped_by: str | None = None  # the signal that stopped the run early, if one did
    resume_command: str | None = None
    first_epoch_samples: int = 0
    validation: str = ""  # where the validation utterances came from, in words


@dataclass
class DryRunReport:
    config_yaml: str
    modules: dict[str, ModuleCount]
    utterances: int
    hours: float
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    token_budget: int
    device: str
    precision: str
    peak_memory_bytes: int
    memory_note: str
    skipped: int = 0
    val_utterances: int = 0


# ---------------------------------------------------------------------------------------- setup


def resolve_device(config: TrainConfig) -> tuple[Any, Any]:
    """(device, autocast dtype or None). bf16 autocast on CUDA by default, fp32 on CPU."""
    import torch

    return autocast_for(config, dist_tools.resolve_device(config.device))


def autocast_for(config: TrainConfig, device: Any) -> tuple[Any, Any]:
    """(device, autocast dtype or None) for `device`, checking the precision setting against it."""
    import torch

    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu":
        raise ConfigError("precision: bf16 autocast is for CUDA; use fp32 on CPU")
    return device, (torch.bfloat16 if precision == "bf16" else None)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def apply_trainable(model: Any, trainable: Sequence[str]) -> dict[str, ModuleCount]:
    """Set `requires_grad` by module (the CTC head never trains); count parameters per module."""
    counts: dict[str, ModuleCount] = {}
    for name, parameter in model.named_parameters():
        module = module_of(name)
        parameter.requires_grad = module in trainable
        count = counts.setdefault(module, ModuleCount())
        if parameter.requires_grad:
            count.trainable += parameter.numel()
        else:
            count.frozen += parameter.numel()
    return counts


def set_train_mode(model: Any, trainable: Sequence[str]) -> None:
    """Dropout on only where weights train: `model.train()` would also wake the frozen modules."""
    model.eval()
    for name in trainable:
        getattr(model, MODULE_ATTRIBUTES[name]).train()


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the peak lr after `step` optimizer steps: linear warmup, then `decay`."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    if decay == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / max(step + 1, 1))
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    if decay == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(config: TrainConfig, total_steps: int) -> int:
    """Warmup scaled to the run: a fraction of all steps, at most upstream's fixed count."""
    return min(config.schedule.max_warmup_steps, int(round(config.schedule.warmup_fraction * total_steps)))


def make_optimizer(model: Any, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    import torch

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=config.optim.lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay
    )
    warmup = warmup_steps_for(config, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, warmup_steps=warmup, total_steps=total_steps, decay=config.schedule.decay, min_ratio=config.schedule.min_lr_ratio
        ),
    )
    return optimizer, scheduler


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


def _read_sources(sources: Sequence[TrainSource], tokenizer: Any, config: TrainConfig) -> tuple[list[Utterance], list[list[int]], list[float], list[Skip]]:
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


def _hold_out(utterances: list[Utterance], groups: list[list[int]], settings: ValidationConfig) -> tuple[list[Utterance], list[list[int]], list[Utterance]]:
    """(training utterances, their groups, validation utterances): the held-out slice leaves training."""
    keys = [u.key for u in utterances]
    count = holdout.held_out_count(len(set(keys)), fraction=settings.held_out_fraction, limit=settings.max_utterances)
    held = holdout.split_held_out(keys, groups, count)
    if not held:
        return utterances, groups, []
    position: dict[int, int] = {}
    kept: list[Utterance] = []
    for index, utterance in enumerate(utterances):
        if index not in held:
            position[index] = len(kept)
            kept.append(utterance)
    validation = list({utterances[index].key: utterances[index] for index in sorted(held, reverse=True)}.values())[::-1]
    return kept, [[position[index] for index in group if index in position] for group in groups], validation


def _read_validation(path: Path, tokenizer: Any, config: TrainConfig) -> tuple[list[Utterance], list[Skip]]:
    """The --val file through the training data's length limits; its first `max_utterances`."""
    read, bad = read_manifest(path, tokenizer)
    kept, outside = filter_lengths(read, max_sample_tokens=config.data.max_sample_tokens, min_speech_frames=config.data.min_speech_frames)
    if not kept:
        raise InputError(f"--val {path}: every line is outside the length limits (data.max_sample_tokens, data.min_speech_frames)")
    return kept[: config.validation.max_utterances or None], bad + outside


def _describe_validation(request: TrainRequest, held_out: int, usable: int, skipped: int) -> str:
    if request.val is not None:
        lost = f"; {skipped} of its lines skipped (reasons in {SKIPPED_FILE})" if skipped else ""
        return f"validation: {usable} utterances of --val {request.val}{lost}"
    settings = request.config.validation
    if held_out:
        failed = f" ({held_out - usable} unreadable)" if held_out > usable else ""
        return (
            f"validation: {held_out} utterances{failed} held out of the training data by a hash of their keys "
            f"(validation.held_out_fraction {settings.held_out_fraction:g}, at most validation.max_utterances); they are not trained on"
        )
    why = "validation.held_out_fraction is 0" if settings.held_out_fraction == 0 else "one training utterance cannot be split"
    return f"validation: none (no --val, and {why}); checkpoints are ranked by step, the last one is best"


def prepare_data(request: TrainRequest, bundle: ModelBundle, world: dist_tools.World | None = None) -> TrainData:
    """Manifests -> training dataset + sampler, and the fixed validation samples (features at dither 0).

    Without --val the validation utterances are a held-out slice of the training files (see
    :mod:`speechft.train.holdout`), removed from training."""
    config = request.config
    utterances, groups, weights, skipped = _read_sources(request.train, bundle.tokenizer, config)
    corpus_utterances = len({u.key for u in utterances} | {s.key for s in skipped})
    if request.val is not None:
        val_utterances, val_skipped = _read_validation(request.val, bundle.tokenizer, config)
    else:
        utterances, groups, val_utterances = _hold_out(utterances, groups, config.validation)
        val_skipped = []
    train_frontend = build_frontend(bundle.config, dither=config.data.dither)
    cache = None if request.dry_run else url_cache_dir(request.output_dir, config.data.url_cache)
    dataset = SpeechDataset(
        utterances, bundle.tokenizer, train_frontend, speech_buckets=config.data.speech_buckets, token_buckets=config.data.token_buckets, url_cache_dir=cache
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
    validation = _describe_validation(request, len(val_utterances), len(val_samples), len(val_skipped))
    return TrainData(dataset, sampler, val_samples, request.val is None, skipped, hours, corpus_utterances, val_skipped, val_source, validation)


# ------------------------------------------------------------------------------------- the step


def batch_loss_sum(model: Any, batch: Batch, device: Any, autocast_dtype: Any, *, track_grad: bool) -> Any:
    """Summed cross-entropy over the batch's target tokens (transcript + <|im_end|>).

    Logits are computed only at target positions: the full (batch, seq, vocab) tensor of a
    150k-token vocabulary would dominate memory for nothing.
    """
    import torch
    import torch.nn.functional as functional

    input_ids = batch.input_ids.to(device)
    attention_mask = batch.attention_mask.to(device)
    labels = batch.labels.to(device)
    with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        embeds = embed_inputs(
            model,
            input_ids,
            batch.speech.to(device),
            batch.speech_lengths.to(device),
            batch.audio_starts,
            batch.audio_token_counts,
            track_grad=track_grad,
        )
        # No KV cache: training never reuses it, and a recomputed (checkpointed) layer would append to it twice.
        hidden = model.llm.model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = model.llm.get_output_embeddings()(hidden[:, :-1][keep])
    return functional.cross_entropy(logits.float(), targets[keep], reduction="sum")


@dataclass
class StepStats:
    loss: float
    grad_norm: float
    lr: float
    audio_seconds: float
    padding_fraction: float
    skipped: bool = False


def train_step(
    forward_module: Any,
    optimizer: Any,
    scheduler: Any,
    batches: Sequence[Batch],
    config: TrainConfig,
    *,
    world: dist_tools.World | None = None,
    step_target_tokens: int | None = None,
) -> StepStats:
    """One optimizer step over `batches`, this rank's accumulation group.

    `forward_module(batch)` returns a batch's summed loss (:class:`TrainForward`, maybe wrapped in
    DDP/FSDP); `step_target_tokens` counts the target tokens of the step on every rank.
    """
    import torch

    world_size = world.world_size if world else 1
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    # Normalise by every target token of the step on every rank, so any split of one global batch
    # over ranks and micro-batches gives the same gradient; DDP and FSDP average over ranks, which
    # the world_size factor undoes.
    total_tokens = max(step_target_tokens if step_target_tokens is not None else sum(b.target_tokens for b in batches), 1)
    scale = world_size / total_tokens
    loss_value = 0.0
    for position, batch in enumerate(batches):
        last = position == len(batches) - 1
        # Gradients cross ranks once per step: on the last micro-batch only.
        sync = contextlib.nullcontext() if last or world is None else dist_tools.without_gradient_sync(forward_module, world)
        with sync:
            loss = forward_module(batch) * scale
            loss.backward()
        loss_value += float(loss.detach()) / world_size
    lr = optimizer.param_groups[0]["lr"]
    # The order matters and lives here: (unscale: none needed, bf16 autocast keeps fp32 gradients)
    # -> clip -> step -> zero_grad -> schedule.
    max_norm = config.optim.grad_clip if config.optim.grad_clip > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
    # The norm is of the synchronised gradients, so every rank takes the same decision.
    finite = math.isfinite(grad_norm)
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    padding = sum(b.padding_fraction * len(b) for b in batches) / max(sum(len(b) for b in batches), 1)
    return StepStats(loss_value, grad_norm, lr, sum(b.seconds for b in batches), padding, skipped=not finite)


# ----------------------------------------------------------------------------------- validation


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Edit distance over characters, whitespace ignored, divided by reference characters."""
    from rapidfuzz.distance import Levenshtein

    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference_chars = "".join(reference.split())
        errors += Levenshtein.distance(reference_chars, "".join(hypothesis.split()))
        total += len(reference_chars)
    return errors / max(total, 1)


@dataclass
class Validation:
    loss: float
    cer: float
    examples: list[tuple[str, str, str]]  # key, reference, hypothesis


def validate(model: Any, bundle: ModelBundle, samples: Sequence[Sample], config: TrainConfig, device: Any, autocast_dtype: Any) -> Validation:
    """Teacher-forced loss and greedy-decoding CER on the fixed validation samples."""
    import torch

    from speechft.model.generate import greedy_decode

    model.eval()
    loss_sum = 0.0
    tokens = 0
    hypotheses: list[str] = []
    ordered = sorted(range(len(samples)), key=lambda i: int(samples[i].features.shape[0]))
    size = config.validation.batch_size
    for begin in range(0, len(ordered), size):
        chunk = [samples[i] for i in ordered[begin : begin + size]]
        batch = collate(chunk)
        with torch.no_grad():
            loss_sum += float(batch_loss_sum(model, batch, device, autocast_dtype, track_grad=False))
        tokens += batch.target_tokens
        bound = config.validation.max_new_tokens or 2 * max(sum(1 for x in s.labels if x != IGNORE_INDEX) for s in chunk) + 10
        hypotheses += greedy_decode(
            bundle, [], [s.prompt for s in chunk], system=[s.system for s in chunk], max_new_tokens=bound, features=[s.features for s in chunk]
        )
    references = [samples[i].text for i in ordered]
    keys = [samples[i].key for i in ordered]
    return Validation(loss_sum / max(tokens, 1), character_error_rate(references, hypotheses), list(zip(keys, references, hypotheses)))


# -------------------------------------------------------------------------------------- helpers


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl, flushed each time (tail -f friendly),
    and mirrors the numbers to TensorBoard event files under `<run>/tensorboard/`."""

    def __init__(self, path: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = path
        self.handle = path.open("a", encoding="utf-8")
        self.board = SummaryWriter(log_dir=str(path.parent / faults.TENSORBOARD_FOLDER))

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        kind, step = record.get("kind"), record.get("step")
        if kind in ("train", "validation") and isinstance(step, int):
            for name, value in record.items():
                if name not in ("kind", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"{kind}/{name}", value, step)
            self.board.flush()

    def close(self) -> None:
        self.handle.close()
        self.board.close()


def record_skips(output_dir: Path, skips: Sequence[Skip], step: int, split: str = "train") -> None:
    """Append to skipped.jsonl; `split` is "val" for lines of the --val file (not counted against training)."""
    if not skips:
        return
    with (output_dir / SKIPPED_FILE).open("a", encoding="utf-8") as handle:
        for skip in skips:
            handle.write(json.dumps({"key": skip.key, "reason": skip.reason, "where": skip.where, "step": step, "split": split}, ensure_ascii=False) + "\n")


def _skipped_before_training(data: TrainData, config: TrainConfig, full_list: Path | None = None) -> str | None:
    """The stop message when reading and filtering the training files (and loading the held-out
    slice) already lost too many utterances; every rank reads the same files, so all agree."""
    records = [(skip.key, skip.reason, skip.where) for skip in data.skipped]
    return faults.skip_problem(records, data.corpus_utterances, config.data.max_skip_fraction, full_list=full_list)


def _stop_if_mostly_skipped(run: Run, state: TrainState, *, nothing_trained: str = "") -> None:
    """During training: rank 0 judges the skipped utterances (all ranks' skips reach it); every rank stops together."""
    problem = None
    if run.world.is_main and (nothing_trained or state.skipped_samples):
        output_dir = run.request.output_dir
        records = faults.read_skip_records(output_dir / SKIPPED_FILE)
        problem = faults.skip_problem(
            records, run.data.corpus_utterances, run.config.data.max_skip_fraction, full_list=output_dir / SKIPPED_FILE,
            nothing_trained=nothing_trained, checkpointed=bool(ckpt.list_checkpoints(output_dir)),
        )
    (stopping,) = dist_tools.sum_across(run.world, [1 if problem else 0])
    if stopping:
        raise TrainingError(problem or f"rank {run.world.rank}: stopping with rank 0, which found too many training utterances skipped (its message lists them)")


def _take(iterator: Iterator[Batch], count: int) -> list[Batch]:
    group = []
    for batch in iterator:
        group.append(batch)
        if len(group) == count:
            break
    return group


def estimate_peak_memory(model: Any, counts: dict[str, ModuleCount], sampler: TokenBatchSampler, dataset: SpeechDataset, autocast_dtype: Any, trainable: Sequence[str]) -> tuple[int, str]:
    """A rough upper estimate of peak training memory for the worst batch of epoch 0."""
    total_parameters = sum(c.trainable + c.frozen for c in counts.values())
    trainable_parameters = sum(c.trainable for c in counts.values())
    # fp32 weights; fp32 gradients and two AdamW moments for what trains.
    static = total_parameters * 4 + trainable_parameters * (4 + 8)
    llm_config = model.llm.config
    hidden, layers, vocab = llm_config.hidden_size, llm_config.num_hidden_layers, llm_config.vocab_size
    encoder_dim = model.audio_encoder.output_size()
    encoder_layers = len(model.audio_encoder.encoders) + len(model.audio_encoder.encoders0) + len(model.audio_encoder.tp_encoders)
    activation_bytes = 2 if autocast_dtype is not None else 4
    worst = 0
    for batch in sampler.epoch_batches(0):
        utterances = [dataset.utterances[i] for i in batch]
        frames = max(u.speech_frames for u in utterances) // 6 + 1
        llm_tokens = max(40 + u.speech_frames // 48 + 1 + u.text_tokens for u in utterances)
        count = len(batch)
        # Rule of thumb: ~17 stored values per hidden unit per token per layer (attention + MLP).
        llm = count * llm_tokens * hidden * layers * 17 * activation_bytes
        encoder = count * frames * encoder_dim * encoder_layers * 17 * activation_bytes if "encoder" in trainable else 0
        logits = sum(u.text_tokens + 1 for u in utterances) * vocab * 4 * 3
        worst = max(worst, llm + encoder + logits)
    note = "rough: fp32 weights + fp32 grads/AdamW moments of trainable params + activations of the worst batch"
    return static + worst, note


def _format_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count} B"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"


def render_dry_run(report: DryRunReport) -> None:
    from rich.table import Table

    out = console.out
    out.print("[bold]resolved config[/]")
    out.print(report.config_yaml.rstrip(), markup=False)
    table = Table(title="parameters per module", show_lines=False)
    table.add_column("module")
    table.add_column("trainable", justify="right")
    table.add_column("frozen", justify="right")
    for name in ("encoder", "adaptor", "llm", "ctc", "other"):
        if name in report.modules:
            count = report.modules[name]
            table.add_row(name, f"{count.trainable:,}", f"{count.frozen:,}")
    total_trainable = sum(c.trainable for c in report.modules.values())
    total_frozen = sum(c.frozen for c in report.modules.values())
    table.add_row("[bold]total[/]", f"{total_trainable:,}", f"{total_frozen:,}")
    out.print(table)
    out.print(f"training utterances: {report.utterances} ({report.hours:.2f} h), skipped lines: {report.skipped}, validation utterances: {report.val_utterances}")
    out.print(f"token budget: {report.token_budget} (padded speech_length + text_length per batch)")
    out.print(f"batches per epoch: {report.batches_per_epoch}, optimizer steps per epoch: {report.steps_per_epoch}, total steps: {report.total_steps}, warmup steps: {report.warmup_steps}")
    out.print(f"device: {report.device}, precision: {report.precision}")
    out.print(f"peak memory estimate: {_format_bytes(report.peak_memory_bytes)} ({report.memory_note})")
    out.print("dry run: nothing was trained")


def _write_curves(output_dir: Path) -> Path | None:
    """loss/CER curves as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (output_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"], r["val_cer"]) for r in records if r.get("kind") == "validation"]
    figure, (loss_axis, cer_axis) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        loss_axis.plot(*zip(*train), label="train loss")
    if val:
        loss_axis.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val loss")
        cer_axis.plot([v[0] for v in val], [100 * v[2] for v in val], "o-", label="val CER %")
    loss_axis.set_xlabel("step")
    cer_axis.set_xlabel("step")
    for axis in (loss_axis, cer_axis):
        if axis.lines:  # a run without validation has no CER curve to label
            axis.legend()
    path = output_dir / "curves.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def _copy_prompt_policy(request: TrainRequest) -> None:
    """Keep the prompt the data was written with beside the model: decoding must use the same one."""
    for source in request.train:
        name = source.path.name
        stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
        sidecar = source.path.with_name(f"{stem}.prompt.json")
        if sidecar.exists():
            shutil.copy2(sidecar, request.output_dir / PROMPT_FILE)
            return


# ------------------------------------------------------------------------------------ the recipe


def _resume_path(request: TrainRequest) -> Path | None:
    if request.resume == "off":
        return None
    if request.resume == "auto":
        found = ckpt.list_checkpoints(request.output_dir)
        return found[-1].path if found else None
    path = Path(request.resume)
    if not (path / ckpt.STATE_FILE).exists():
        raise InputError(f"--resume {path}: not a checkpoint folder (no {ckpt.STATE_FILE})")
    return path


@dataclass
class Run:
    """What the loop works with, built once by `run_training`."""

    request: TrainRequest
    config: TrainConfig
    world: dist_tools.World
    bundle: ModelBundle
    data: TrainData
    forward_module: Any  # TrainForward, maybe inside DDP or sharded by FSDP2
    optimizer: Any
    scheduler: Any
    metrics: MetricsWriter | None  # rank 0 only
    total_steps: int
    autocast_dtype: Any


def _plan_steps(config: TrainConfig, data: TrainData) -> tuple[int, int, int]:
    """(batches per epoch, optimizer steps per epoch, total steps) for this rank (all ranks agree)."""
    batches_per_epoch = len(data.sampler.epoch_batches(0))
    if batches_per_epoch == 0:
        raise InputError("no training batches: check data.token_budget against the utterance lengths")
    steps_per_epoch = math.ceil(batches_per_epoch / config.optim.grad_accum_steps)
    total_steps = steps_per_epoch * config.max_epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    return batches_per_epoch, steps_per_epoch, total_steps


def dry_run(request: TrainRequest) -> DryRunReport:
    """Build model and data, report what training would do, train nothing."""
    config = request.config
    device, autocast_dtype = resolve_device(config)
    seed_everything(config.seed)
    bundle = load_model(request.model_dir, device=str(device), allow_missing=request.allow_missing)
    counts = apply_trainable(bundle.model, config.trainable)
    data = prepare_data(request, bundle)
    batches_per_epoch, steps_per_epoch, total_steps = _plan_steps(config, data)
    peak, note = estimate_peak_memory(bundle.model, counts, data.sampler, data.dataset, autocast_dtype, config.trainable)
    problem = _skipped_before_training(data, config)
    report = DryRunReport(
        config_yaml=dump_config(config),
        modules=counts,
        utterances=len(data.dataset),
        hours=data.hours,
        batches_per_epoch=batches_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup_steps_for(config, total_steps),
        token_budget=config.data.token_budget,
        device=str(device),
        precision="bf16 autocast" if autocast_dtype is not None else "fp32",
        peak_memory_bytes=peak,
        memory_note=note,
        skipped=len(data.skipped),
        val_utterances=len(data.val_samples),
    )
    render_dry_run(report)
    console.out.print(escape(data.validation))
    if problem:
        raise TrainingError(problem)
    return report


def share_resolved_config(request: TrainRequest, world: dist_tools.World) -> TrainConfig:
    """Rank 0 writes the resolved config into the run directory; every rank then trains from that file."""
    path = request.output_dir / RESOLVED_CONFIG
    if world.is_main:
        path.write_text(
            f"# resolved training config (profile: {request.profile}); rerun with --profile {path}\n" + dump_config(request.config),
            encoding="utf-8",
        )
    dist_tools.barrier(world)
    return load_config(path)


def run_training(request: TrainRequest) -> TrainResult | DryRunReport:
    """Train (or, with `dry_run`, only report on) one fine-tuning run, on this rank of the world."""
    if request.dry_run:
        return dry_run(request)
    started = time.monotonic()
    faults.check_output_dir(request.output_dir)
    settings = request.config.distributed
    with dist_tools.world_session(request.config.device, strategy=settings.strategy, timeout_s=settings.timeout_s) as world:
        faults.check_shared_output_dir(request.output_dir, world)
        if not request.output_dir_checked:
            _prepare_output_dir(request, world)
        config = share_resolved_config(request, world)
        try:
            return _train(request, config, world, started)
        except dist_tools.collective_failure_types() as error:
            if not world.distributed or isinstance(error, TrainingError):
                raise
            dist_tools.raise_lost_ranks(world, error)
            raise  # unreachable: raise_lost_ranks always raises


def _prepare_output_dir(request: TrainRequest, world: dist_tools.World) -> None:
    """Rank 0 refuses an earlier run's output directory (or clears it as asked) before any rank writes there."""
    error: SpeechftError | None = None
    if world.is_main:
        try:
            notes = faults.prepare_output_dir(
                request.output_dir, resume=request.resume, overwrite=request.overwrite, model_dir=request.model_dir, keep=(request.config.data.url_cache,)
            )
            for note in notes:
                console.err.print(escape(note), soft_wrap=True)
        except SpeechftError as caught:
            error = caught
    (refused,) = dist_tools.sum_across(world, [1 if error else 0])
    if error is not None:
        raise error
    if refused:
        raise UsageError(f"rank {world.rank}: rank 0 refused --output-dir {request.output_dir} (its message says why)")


def _train(request: TrainRequest, config: TrainConfig, world: dist_tools.World, started: float) -> TrainResult:
    from speechft.train.forward import TrainForward

    device, autocast_dtype = autocast_for(config, world.device)
    # Every rank draws its own dropout masks and dither; weights come from model.pt, identical everywhere.
    seed_everything(config.seed + world.rank)
    bundle = load_model(request.model_dir, device=str(device), allow_missing=request.allow_missing, announce=world.is_main)
    model = bundle.model
    if world.is_main and bundle.ctc_head and "encoder" in config.trainable:
        console.err.print(
            "[yellow]the CTC timestamp head stays frozen and is exported as it was; with the encoder fine-tuned, "
            "its timestamps may drift (transcripts come from the LLM and are unaffected)[/]",
            soft_wrap=True,
        )
    counts = apply_trainable(model, config.trainable)
    apply_speed_switches(model, config)
    trainable_parameters = sum(count.trainable for count in counts.values())
    if world.is_main:
        model_bytes = sum(parameter.numel() * 4 for parameter in model.parameters())
        copies = config.checkpoint.keep_last + config.checkpoint.average_count + 1
        faults.check_free_space(request.output_dir, copies * faults.checkpoint_bytes(trainable_parameters) + model_bytes)
    data = prepare_data(request, bundle, world)
    output_dir = request.output_dir
    resume_from = _resume_path(request)
    if world.is_main and resume_from is None:
        record_skips(output_dir, data.skipped, 0)
        record_skips(output_dir, data.val_skipped, 0, split="val")
    problem = _skipped_before_training(data, config, output_dir / SKIPPED_FILE)
    if problem:
        raise TrainingError(problem)
    _, _, total_steps = _plan_steps(config, data)
    forward_module = dist_tools.wrap_for_training(TrainForward(model, device, autocast_dtype), world)
    # After wrapping: FSDP2 replaces parameters by their shards, which the optimizer must hold.
    optimizer, scheduler = make_optimizer(model, config, total_steps)

    # A line may fail both as a validation and as a training sample: count utterances, not failures.
    skipped_keys = sorted({skip.key for skip in data.skipped})
    state = TrainState(skipped_samples=len(skipped_keys), skipped_keys=skipped_keys)
    if resume_from is not None:
        state = _resume(resume_from, model, forward_module, optimizer, scheduler, world)
    if world.is_main:
        (output_dir / STOPPED_FILE).unlink(missing_ok=True)
        if data.skipped and resume_from is None:
            console.err.print(f"[yellow]skipped {len(skipped_keys)} of {data.corpus_utterances} training utterances before training[/] (reasons in {output_dir / SKIPPED_FILE})")
        console.err.print(escape(data.validation), soft_wrap=True)
        if resume_from is not None:
            console.err.print(f"resumed from {resume_from} at step {state.step} (epoch {state.epoch + 1}, batch {state.batch_in_epoch})")
        if world.distributed:
            console.err.print(f"{world.world_size} ranks, {world.strategy}, {world.device.type}")
    metrics = MetricsWriter(output_dir / METRICS_FILE) if world.is_main else None
    if metrics is not None:
        metrics.write(_data_record(data, state))
    run = Run(request, config, world, bundle, data, forward_module, optimizer, scheduler, metrics, total_steps, autocast_dtype)
    try:
        with faults.GracefulStop() as stop:
            last_loss = fit(run, state, stop)
    finally:
        if metrics is not None:
            metrics.close()
    if stop.requested:
        return _stopped(run, state, last_loss, stop.signal_name or "a signal", started)
    _stop_if_mostly_skipped(run, state)
    result = replace(finish(request, bundle, state, last_loss, started, world, forward_module), validation=data.validation)
    if world.is_main:
        write_summary(result)
    return result


def _data_record(data: TrainData, state: TrainState) -> dict[str, Any]:
    """The metrics line that says what this run trains and validates on."""
    return {
        "kind": "data",
        "step": state.step,
        "train_utterances": len(data.dataset),
        "corpus_utterances": data.corpus_utterances,
        "skipped_utterances": state.skipped_samples,
        "val_utterances": len(data.val_samples),
        "val_source": data.val_source,
        "validation": data.validation,
    }


def write_summary(result: TrainResult) -> None:
    """train_summary.json: the run's outcome, machine-readable."""
    record = {**asdict(result), "output_dir": str(result.output_dir)}
    (result.output_dir / SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _resume(path: Path, model: Any, forward_module: Any, optimizer: Any, scheduler: Any, world: dist_tools.World) -> TrainState:
    """Weights, optimizer, scheduler, counters and this rank's RNG state from a checkpoint."""
    saved = ckpt.restore_training(path, model=model, forward_module=forward_module, optimizer=optimizer, scheduler=scheduler, world=world)
    state = TrainState(**saved["train_state"])
    rng_states = saved["rng"] if isinstance(saved["rng"], list) else [saved["rng"]]
    if len(rng_states) == world.world_size:
        ckpt.restore_rng_state(rng_states[world.rank])
    elif state.batch_in_epoch:
        raise InputError(
            f"{path}: written by {len(rng_states)} rank(s) in the middle of an epoch; resume it on {len(rng_states)} rank(s) "
            "(each rank's place in the epoch depends on the number of ranks)"
        )
    else:
        seed_everything(state.step * 1009 + world.rank)  # a new world size: fresh per-rank streams
    return state


def _stopped(run: Run, state: TrainState, last_loss: float | None, signal_name: str, started: float) -> TrainResult:
    """The run was asked to stop: the checkpoint is written; say how to continue."""
    command = faults.resume_command(os.environ.get(dist_tools.COMMAND_VARIABLE) or run.request.command)
    if run.world.is_main:
        latest = ckpt.list_checkpoints(run.request.output_dir)[-1].path
        (run.request.output_dir / STOPPED_FILE).write_text(
            json.dumps({"signal": signal_name, "step": state.step, "checkpoint": str(latest), "resume": command}, indent=2) + "\n", encoding="utf-8"
        )
    return TrainResult(
        output_dir=run.request.output_dir,
        steps=state.step,
        final_loss=last_loss,
        best_val_cer=None,
        selected=[],
        skipped_samples=state.skipped_samples,
        seconds=time.monotonic() - started,
        stopped_by=signal_name,
        resume_command=command,
        first_epoch_samples=state.first_epoch_samples,
    )


def _checkpoint(run: Run, state: TrainState, *, validation: bool = True) -> Validation | None:
    """Validate (every rank runs the same decoding: FSDP needs them all) and write a checkpoint on rank 0."""
    config, world, model = run.config, run.world, run.bundle.model
    result = None
    if validation and run.data.val_samples:
        with dist_tools.full_parameters(run.forward_module, world):
            result = validate(model, run.bundle, run.data.val_samples, config, world.device, run.autocast_dtype)
        set_train_mode(model, config.trainable)
    if result is not None and run.metrics is not None:
        run.metrics.write({"kind": "validation", "step": state.step, "epoch": state.epoch, "val_loss": result.loss, "val_cer": result.cer, "val_utterances": len(run.data.val_samples), "val_from_train": run.data.val_from_train, "val_source": run.data.val_source})
    state.last_validated_step = state.step
    weights, optimizer_state = ckpt.training_snapshot(model, run.forward_module, run.optimizer, world)
    rng_states = dist_tools.gather_to_main(world, ckpt.rng_state())
    if world.is_main:
        ckpt.save_checkpoint(
            run.request.output_dir,
            state.step,
            weights=weights,
            optimizer_state=optimizer_state,
            scheduler=run.scheduler,
            train_state=asdict(state),
            sampler_state=run.data.sampler.state_dict() | {"start": state.batch_in_epoch},
            rng_states=rng_states,
            optimizer_format=ckpt.optimizer_format_for(world),
            world_size=world.world_size,
            val_cer=result.cer if result else None,
            val_loss=result.loss if result else None,
        )
        ckpt.prune_checkpoints(run.request.output_dir, keep_last=config.checkpoint.keep_last, keep_best=config.checkpoint.average_count)
    return result


def _progress(request: TrainRequest, world: dist_tools.World) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console.err,
        disable=not (request.show_progress and world.is_main),
        transient=False,
    )


def _loader_generator(seed: int, epoch: int, rank: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1_009 + rank)


def _note_skips(run: Run, state: TrainState, skips: list[Skip], any_rank_skipped: bool) -> None:
    """Skipped samples of this step, from every rank, recorded once by rank 0."""
    if not any_rank_skipped:
        return
    everyone = [skip for rank_skips in dist_tools.gather_to_main(run.world, skips) for skip in rank_skips]
    if not run.world.is_main:
        return
    new = [skip for skip in everyone if skip.key not in state.skipped_keys]
    state.skipped_keys += [skip.key for skip in new]
    state.skipped_samples += len(new)
    record_skips(run.request.output_dir, new, state.step)
    for skip in new:
        console.err.print(f"[yellow]skipped[/] {escape(skip.key)}: {escape(skip.reason)}", highlight=False)


def fit(run: Run, state: TrainState, stop: faults.GracefulStop) -> float | None:
    """The loop: epochs of accumulation groups; validate + checkpoint every N steps and per epoch.

    Before each step the ranks sum three numbers: target tokens (the loss normaliser), ranks with
    nothing readable (then all skip the step) and ranks that saw new skipped samples. After it they
    sum the loss, audio seconds, samples and the ranks asked to stop: then all checkpoint and
    return before loading the next batches, whose loading would move the RNG past the checkpoint.
    """
    config, world, data, model = run.config, run.world, run.data, run.bundle.model
    set_train_mode(model, config.trainable)
    last_loss: float | None = None
    window_seconds, window_start = 0.0, time.monotonic()
    with _progress(run.request, world) as progress:
        task = progress.add_task("train", total=run.total_steps, completed=state.step, epoch=state.epoch + 1, stats="")
        while state.epoch < config.max_epochs and state.step < run.total_steps:
            data.sampler.set_epoch(state.epoch, start=state.batch_in_epoch)
            whole_epoch, steps_before = state.batch_in_epoch == 0, state.step
            loader = make_loader(data.dataset, data.sampler, config.data.num_workers, _loader_generator(config.seed, state.epoch, world.rank))
            batches = iter(loader)
            while state.step < run.total_steps:
                group = _take(batches, config.optim.grad_accum_steps)
                if not group:
                    break
                usable = [b for b in group if len(b)]
                skips = [s for b in group for s in b.skipped if s.key not in state.skipped_keys]
                step_tokens, empty_ranks, skipping_ranks = dist_tools.sum_across(
                    world, [sum(b.target_tokens for b in usable), 0 if usable else 1, 1 if skips else 0]
                )
                state.batch_in_epoch += len(group)
                _note_skips(run, state, skips, skipping_ranks > 0)
                if empty_ranks:
                    continue  # some rank has no readable sample in this group: every rank skips it
                stats = train_step(run.forward_module, run.optimizer, run.scheduler, usable, config, world=world, step_target_tokens=int(step_tokens))
                loss, seconds, samples, stopping_ranks = dist_tools.sum_across(
                    world, [stats.loss, stats.audio_seconds, sum(len(b) for b in usable), 1 if stop.requested else 0]
                )
                state.step += 1
                state.audio_seconds += seconds
                window_seconds += seconds
                if state.epoch == 0:
                    state.first_epoch_samples += int(samples)
                _count_nonfinite(state, stats, loss, config)
                last_loss = loss
                rate = window_seconds / max(time.monotonic() - window_start, 1e-9)
                progress.update(task, completed=state.step, epoch=state.epoch + 1, stats=f"loss {loss:.3f}  lr {stats.lr:.2e}  {rate:.0f} audio-s/s  pad {stats.padding_fraction:.0%}")
                if run.metrics is not None and (state.step % config.log_every == 0 or state.step == 1):
                    run.metrics.write({"kind": "train", "step": state.step, "epoch": state.epoch, "loss": loss, "lr": stats.lr, "grad_norm": stats.grad_norm, "audio_seconds_per_second": rate, "padding_fraction": stats.padding_fraction, "elapsed_s": time.monotonic() - window_start, "skipped_samples": state.skipped_samples, "nonfinite_steps": state.nonfinite_steps})
                if config.validation.every_steps and state.step % config.validation.every_steps == 0:
                    _checkpoint(run, state)
                if stopping_ranks:
                    if state.last_validated_step != state.step:
                        _checkpoint(run, state, validation=False)
                    stop.signal_name = stop.signal_name or "a signal on another rank"
                    return last_loss
            if state.step >= run.total_steps and state.batch_in_epoch < len(data.sampler.epoch_batches(state.epoch)):
                break  # stopped by max_steps inside the epoch; the counters say where
            if whole_epoch and state.step == steps_before:
                _stop_if_mostly_skipped(run, state, nothing_trained=f"epoch {state.epoch + 1} made no optimizer step")
            state.epoch += 1
            state.batch_in_epoch = 0
            if state.last_validated_step != state.step:
                result = _checkpoint(run, state)
                if result is not None and world.is_main:
                    console.err.print(f"epoch {state.epoch}: step {state.step}, val loss {result.loss:.3f}, val CER {result.cer:.2%}")
            if state.epoch == 1:
                # Every utterance has been tried once: a resume after raising the limit loses no work.
                _stop_if_mostly_skipped(run, state)
        if state.last_validated_step != state.step:
            _checkpoint(run, state)
    return last_loss


def _count_nonfinite(state: TrainState, stats: StepStats, loss: float, config: TrainConfig) -> None:
    """A non-finite step was skipped; too many in a row means training has diverged: stop."""
    if not stats.skipped:
        state.nonfinite_in_a_row = 0
        return
    state.nonfinite_steps += 1
    state.nonfinite_in_a_row += 1
    console.err.print(f"[yellow]step {state.step}: non-finite loss or gradient (loss {loss}, grad norm {stats.grad_norm}), update skipped[/]")
    limit = config.optim.max_nonfinite_steps
    if state.nonfinite_in_a_row >= limit:
        raise TrainingError(
            f"{state.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or gradient (up to step {state.step}); "
            f"training has diverged. Lower optim.lr, check the data, or raise optim.max_nonfinite_steps (now {limit}). "
            "The last checkpoint holds finite weights."
        )


def finish(
    request: TrainRequest,
    bundle: ModelBundle,
    state: TrainState,
    last_loss: float | None,
    started: float,
    world: dist_tools.World | None = None,
    forward_module: Any = None,
) -> TrainResult:
    """Write model.pt from the selected checkpoint(s) and the rest of the model directory (rank 0)."""
    config = request.config
    # Under FSDP the frozen weights are sharded too: gather them whole (every rank takes part).
    whole = ckpt.whole_weights(forward_module, world) if world is not None and world.sharded else {}
    chosen = ckpt.selected_checkpoints(request.output_dir, config.checkpoint.select)
    if world is None or world.is_main:
        weights, chosen = ckpt.selected_weights(request.output_dir, config.checkpoint.select)
        ckpt.write_model_dir(request.output_dir, bundle.model_dir, ckpt.export_state(bundle.model, read_state_dict(bundle.weights_path, mmap=True), weights, whole, llm_dtype=bundle.llm_dtype))
        _copy_prompt_policy(request)
        _write_curves(request.output_dir)
    best = [c.val_cer for c in chosen if c.val_cer is not None]
    summary = TrainResult(
        output_dir=request.output_dir,
        steps=state.step,
        final_loss=last_loss,
        best_val_cer=min(best) if best else None,
        selected=[c.path.name for c in chosen],
        skipped_samples=state.skipped_samples,
        seconds=time.monotonic() - started,
        first_epoch_samples=state.first_epoch_samples,
    )
    return summary
