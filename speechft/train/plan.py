"""What a run would do, without training: the dry run's report and the memory estimate.

:func:`dry_run` builds the model and reads the data exactly as training would, and returns a
:class:`DryRunReport`; the CLI renders it. :func:`plan_steps` is the one place the number of
optimizer steps is worked out, for the dry run and the run alike; :func:`choose_strategy` the one
place `distributed.strategy: auto` is decided (DDP when the memory estimate fits one GPU).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from speechft import console
from speechft.data.dataset import SpeechDataset
from speechft.data.index import ManifestIndex
from speechft.data.sampler import TokenBatchSampler
from speechft.errors import InputError, TrainingError
from speechft.model.build import load_model
from speechft.train import distributed as dist_tools
from speechft.train import faults, lora
from speechft.train.checkpoint import seed_everything
from speechft.train.config import DataConfig, TrainConfig, dump_config
from speechft.train.corpus import TrainData, prepare_data
from speechft.train.modules import ModuleCount, apply_trainable, autocast_for, precision_name
from speechft.train.optim import warmup_steps_for
from speechft.train.run_dir import TrainRequest

# Share of a GPU's memory DDP must leave free: the CUDA context, the allocator's fragmentation and
# DDP's gradient buckets (a second copy of the gradients), none of which the estimate counts.
DDP_HEADROOM = 0.2
MEMORY_NOTE = "rough: fp32 weights + fp32 grads/AdamW moments of trainable params (LoRA adapters included) + activations of the worst batch"
# `data.token_budget: auto` tries these and keeps the largest whose estimated peak fits the GPU.
TOKEN_BUDGET_LADDER = (2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000, 48000, 64000)
# Of the GPU's memory, the estimate may fill this fraction less a fixed reserve (CUDA context,
# cuBLAS/NCCL workspaces, allocator fragmentation): the estimate is rough.
AUTO_MEMORY_FRACTION = 0.9
AUTO_RESERVE_BYTES = 2 * 1024**3


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
    token_budget_reason: str
    device: str
    precision: str
    peak_memory_bytes: int
    memory_note: str
    skipped: int = 0
    val_utterances: int = 0
    validation: str = ""  # where the validation utterances would come from, in words
    problem: str | None = None  # reading the data already lost too much: training would stop
    strategy: str = ""  # what distributed.strategy means with several ranks: ddp | fsdp
    strategy_reason: str = ""


def plan_steps(config: TrainConfig, data: TrainData, resumed: dict[str, Any] | None = None) -> tuple[int, int, int]:
    """(batches per epoch, optimizer steps per epoch, total steps) for this rank (all ranks agree).

    `resumed`: the counters of a checkpoint written by a different number of ranks (see
    :func:`speechft.train.checkpoint.moved_position`); the total is then the steps already taken,
    those left in its epoch as re-dealt to this world size, and whole epochs after it."""
    batches_per_epoch = data.sampler.batches_per_rank(0)
    if batches_per_epoch == 0:
        raise InputError("no training batches: check data.token_budget against the utterance lengths")
    steps_per_epoch = math.ceil(batches_per_epoch / config.optim.grad_accum_steps)
    total_steps = steps_per_epoch * config.max_epochs
    if resumed is not None and resumed["epoch"] < config.max_epochs:
        sampler = data.sampler
        left = len(sampler.dealt_plan(resumed["epoch"], resumed["batch_in_epoch"], resumed["epoch_segments"])) // sampler.world_size
        later = config.max_epochs - resumed["epoch"] - 1
        total_steps = resumed["step"] + math.ceil(left / config.optim.grad_accum_steps) + later * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    return batches_per_epoch, steps_per_epoch, total_steps


def _length_arrays(dataset: SpeechDataset) -> tuple[np.ndarray, np.ndarray]:
    """(speech frames, text tokens) of every utterance of the dataset."""
    utterances = dataset.utterances
    if isinstance(utterances, ManifestIndex):
        return utterances.speech_frames.astype(np.int64), utterances.text_tokens.astype(np.int64)
    return np.array([u.speech_frames for u in utterances], dtype=np.int64), np.array([u.text_tokens for u in utterances], dtype=np.int64)


def estimate_peak_memory(
    model: Any, counts: dict[str, ModuleCount], sampler: TokenBatchSampler, dataset: SpeechDataset, autocast_dtype: Any, trainable: Sequence[str]
) -> int:
    """A rough upper estimate of peak training memory in bytes for the worst batch of epoch 0."""
    static = static_memory(counts)
    llm_config = model.llm.config
    hidden, layers, vocab = llm_config.hidden_size, llm_config.num_hidden_layers, llm_config.vocab_size
    encoder_dim = model.audio_encoder.output_size()
    encoder_layers = len(model.audio_encoder.encoders) + len(model.audio_encoder.encoders0) + len(model.audio_encoder.tp_encoders)
    activation_bytes = 2 if autocast_dtype is not None else 4
    # Each adapted layer keeps its input and A·x for backward (zero without LoRA).
    adapter_values = lora.activation_values_per_token(model)
    plan = sampler.dealt_plan(0)
    plan = plan.select(sampler.rank_positions(plan))
    if len(plan) == 0:
        return static
    frames, tokens = _length_arrays(dataset)
    frames, tokens = frames[plan.items], tokens[plan.items]
    starts = plan.bounds[:-1]
    longest_frames = np.maximum.reduceat(frames, starts) // 6 + 1
    llm_tokens = np.maximum.reduceat(40 + frames // 48 + 1 + tokens, starts)
    count = plan.sizes
    # Rule of thumb: ~17 stored values per hidden unit per token per layer (attention + MLP).
    llm = count * llm_tokens * (hidden * layers * 17 + adapter_values) * activation_bytes
    encoder = count * longest_frames * encoder_dim * encoder_layers * 17 * activation_bytes if "encoder" in trainable else 0
    logits = np.add.reduceat(tokens + 1, starts) * vocab * 4 * 3
    return static + int(np.max(llm + encoder + logits))


def static_memory(counts: dict[str, ModuleCount]) -> int:
    """Bytes of fp32 weights, and of fp32 gradients and two AdamW moments for what trains."""
    total_parameters = sum(c.trainable + c.frozen for c in counts.values())
    trainable_parameters = sum(c.trainable for c in counts.values())
    return total_parameters * 4 + trainable_parameters * (4 + 8)


@dataclass(frozen=True)
class StrategyChoice:
    """How several ranks hold the model (ddp | fsdp), and why, in words with the numbers."""

    strategy: str
    reason: str

    def describe(self) -> str:
        return f"strategy: {self.strategy} ({self.reason})"


def choose_strategy(setting: str, *, device: str, device_bytes: int | None, static_bytes: int, peak_bytes: int) -> StrategyChoice:
    """`distributed.strategy` as a run uses it: ddp and fsdp as set; auto is DDP (each rank a whole
    copy: fastest) when the peak estimate fits in one device with :data:`DDP_HEADROOM` to spare, FSDP2
    otherwise. Without a GPU (`device_bytes` None) auto is DDP."""
    if setting != "auto":
        return StrategyChoice(setting, f"distributed.strategy: {setting}")
    if device_bytes is None:
        return StrategyChoice("ddp", f"auto: on {device} every rank holds the whole model")
    numbers = (
        f"weights, gradients and AdamW state {gib(static_bytes)} + activations {gib(peak_bytes - static_bytes)} = {gib(peak_bytes)}, "
        f"{device} has {gib(device_bytes)}"
    )
    if peak_bytes <= device_bytes * (1 - DDP_HEADROOM):
        return StrategyChoice("ddp", f"auto: {numbers}: fits with {DDP_HEADROOM:.0%} to spare, so every rank holds the whole model")
    return StrategyChoice("fsdp", f"auto: {numbers}: does not fit with {DDP_HEADROOM:.0%} to spare, so FSDP2 shards weights, gradients and AdamW state")


def gib(count: float) -> str:
    return f"{count / 2**30:.1f} GiB"


def device_memory(device: Any) -> int | None:
    """Total bytes of a CUDA device; None for the CPU."""
    if device.type != "cuda":
        return None
    import torch

    return int(torch.cuda.get_device_properties(device).total_memory)


def settle_strategy(
    config: TrainConfig, world: dist_tools.World, model: Any, counts: dict[str, ModuleCount], data: TrainData, autocast_dtype: Any
) -> dist_tools.World:
    """`world` with its strategy decided; rank 0 decides for every rank and says which and why."""
    if not world.distributed:
        return world
    choice = None
    if world.is_main:
        setting = config.distributed.strategy
        estimate = setting == "auto" and world.device.type == "cuda"
        peak = estimate_peak_memory(model, counts, data.sampler, data.dataset, autocast_dtype, config.trainable) if estimate else 0
        choice = choose_strategy(
            setting, device=str(world.device), device_bytes=device_memory(world.device), static_bytes=static_memory(counts), peak_bytes=peak
        )
        console.err.print(choice.describe(), soft_wrap=True, markup=False)
    choice = dist_tools.broadcast_from_main(world, choice)
    return dataclasses.replace(world, strategy=choice.strategy)


@dataclass(frozen=True)
class BudgetChoice:
    token_budget: int
    reason: str  # in words, for the dry run and the start of a run


def provisional(request: TrainRequest) -> TrainRequest:
    """`request` with a number for `data.token_budget: auto` (the schema default) until :func:`settle_token_budget` chooses."""
    config = request.config
    if config.data.token_budget != "auto":
        return request
    default = DataConfig().token_budget
    return replace(request, config=replace(config, data=replace(config.data, token_budget=default)))


def with_token_budget(sampler: TokenBatchSampler, token_budget: int) -> TokenBatchSampler:
    """A copy of `sampler` cutting batches at another budget (the rest of its settings unchanged)."""
    budgeted = copy.copy(sampler)
    budgeted.token_budget = token_budget
    return budgeted


def settle_token_budget(
    config: TrainConfig, data: TrainData, model: Any, counts: dict[str, ModuleCount], autocast_dtype: Any, device: Any, world: Any = None
) -> tuple[TrainConfig, TrainData, BudgetChoice]:
    """The config and data with `data.token_budget` a number: the config's own, or for `auto` the
    largest of :data:`TOKEN_BUDGET_LADDER` whose estimated peak fits the GPU on every rank. The
    GPU's total memory decides, not what is free now, so that a resume picks the same batches."""
    import torch

    def peak_at(budget: int) -> int:
        return estimate_peak_memory(model, counts, with_token_budget(data.sampler, budget), data.dataset, autocast_dtype, config.trainable)

    if config.data.token_budget != "auto":
        return config, data, BudgetChoice(config.data.token_budget, "set in the config")
    budget = DataConfig().token_budget
    reason = f"auto on {device.type}: the default (memory does not limit batches there)"
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        capacity = int(properties.total_memory * AUTO_MEMORY_FRACTION) - AUTO_RESERVE_BYTES
        peaks = [peak_at(rung) for rung in TOKEN_BUDGET_LADDER]
        fitting = [1 if peak <= capacity else 0 for peak in peaks]
        ranks = world.world_size if world is not None else 1
        if world is not None:
            fitting = [int(count) for count in dist_tools.sum_across(world, fitting)]
        chosen = [rung for rung, count in zip(TOKEN_BUDGET_LADDER, fitting) if count == ranks]
        if not chosen:
            raise TrainingError(
                f"data.token_budget auto: even {TOKEN_BUDGET_LADDER[0]} tokens per batch are estimated at {gib(peaks[0])}, more than the "
                f"{gib(capacity)} allowed on {properties.name} ({AUTO_MEMORY_FRACTION:.0%} of {gib(properties.total_memory)} less "
                f"{gib(AUTO_RESERVE_BYTES)}); set activation_checkpointing=true, train fewer modules, or set data.token_budget to a number"
            )
        budget = chosen[-1]
        reason = (
            f"auto: the largest of {TOKEN_BUDGET_LADDER[0]}..{TOKEN_BUDGET_LADDER[-1]} whose estimated peak "
            f"({gib(peaks[TOKEN_BUDGET_LADDER.index(budget)])}) fits {gib(capacity)} "
            f"({AUTO_MEMORY_FRACTION:.0%} of the {properties.name}'s {gib(properties.total_memory)} less {gib(AUTO_RESERVE_BYTES)})"
        )
    config = replace(config, data=replace(config.data, token_budget=budget))
    data = replace(data, sampler=with_token_budget(data.sampler, budget))
    return config, data, BudgetChoice(budget, reason)


def dry_run(request: TrainRequest) -> DryRunReport:
    """Build model and data as training would; report what it would do; train nothing, write nothing."""
    config = request.config
    device, autocast_dtype = autocast_for(config, dist_tools.resolve_device(config.device))
    seed_everything(config.seed)
    bundle = load_model(request.model_dir, device=str(device), allow_missing=request.allow_missing)
    if config.lora.enabled:
        lora.apply_lora(bundle.model, config.lora, config.seed)
    counts = apply_trainable(bundle.model, config.trainable)
    data = prepare_data(provisional(request), bundle)
    config, data, budget = settle_token_budget(config, data, bundle.model, counts, autocast_dtype, device)
    batches_per_epoch, steps_per_epoch, total_steps = plan_steps(config, data)
    peak = estimate_peak_memory(bundle.model, counts, data.sampler, data.dataset, autocast_dtype, config.trainable)
    choice = choose_strategy(
        config.distributed.strategy, device=str(device), device_bytes=device_memory(device), static_bytes=static_memory(counts), peak_bytes=peak
    )
    records = [(skip.key, skip.reason, skip.where) for skip in data.skipped]
    return DryRunReport(
        config_yaml=dump_config(config),
        modules=counts,
        utterances=len(data.dataset),
        hours=data.hours,
        batches_per_epoch=batches_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup_steps_for(config, total_steps),
        token_budget=budget.token_budget,
        token_budget_reason=budget.reason,
        device=str(device),
        precision=precision_name(autocast_dtype),
        peak_memory_bytes=peak,
        memory_note=MEMORY_NOTE,
        skipped=len(data.skipped),
        val_utterances=len(data.val_samples),
        validation=data.validation,
        problem=faults.skip_problem(records, data.corpus_utterances, config.data.max_skip_fraction),
        strategy=choice.strategy,
        strategy_reason=choice.reason,
    )
