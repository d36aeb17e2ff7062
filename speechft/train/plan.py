"""What a run would do, without training: the dry run's report and the memory estimate.

:func:`dry_run` builds the model and reads the data exactly as training would, and returns a
:class:`DryRunReport`; the CLI renders it. :func:`plan_steps` is the one place the number of
optimizer steps is worked out, for the dry run and the run alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechft.data.dataset import SpeechDataset
from speechft.data.index import ManifestIndex
from speechft.data.sampler import TokenBatchSampler
from speechft.errors import InputError
from speechft.model.build import load_model
from speechft.train import distributed as dist_tools
from speechft.train import faults, lora
from speechft.train.checkpoint import seed_everything
from speechft.train.config import TrainConfig, dump_config
from speechft.train.corpus import TrainData, prepare_data
from speechft.train.modules import ModuleCount, apply_trainable, autocast_for
from speechft.train.optim import warmup_steps_for
from speechft.train.run_dir import TrainRequest

MEMORY_NOTE = "rough: fp32 weights + fp32 grads/AdamW moments of trainable params (LoRA adapters included) + activations of the worst batch"


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
    validation: str = ""  # where the validation utterances would come from, in words
    problem: str | None = None  # reading the data already lost too much: training would stop


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
    total_parameters = sum(c.trainable + c.frozen for c in counts.values())
    trainable_parameters = sum(c.trainable for c in counts.values())
    # fp32 weights; fp32 gradients and two AdamW moments for what trains.
    static = total_parameters * 4 + trainable_parameters * (4 + 8)
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


def dry_run(request: TrainRequest) -> DryRunReport:
    """Build model and data as training would; report what it would do; train nothing, write nothing."""
    config = request.config
    device, autocast_dtype = autocast_for(config, dist_tools.resolve_device(config.device))
    seed_everything(config.seed)
    bundle = load_model(request.model_dir, device=str(device), allow_missing=request.allow_missing)
    if config.lora.enabled:
        lora.apply_lora(bundle.model, config.lora, config.seed)
    counts = apply_trainable(bundle.model, config.trainable)
    data = prepare_data(request, bundle)
    batches_per_epoch, steps_per_epoch, total_steps = plan_steps(config, data)
    peak = estimate_peak_memory(bundle.model, counts, data.sampler, data.dataset, autocast_dtype, config.trainable)
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
        token_budget=config.data.token_budget,
        device=str(device),
        precision="bf16 autocast" if autocast_dtype is not None else "fp32",
        peak_memory_bytes=peak,
        memory_note=MEMORY_NOTE,
        skipped=len(data.skipped),
        val_utterances=len(data.val_samples),
        validation=data.validation,
        problem=faults.skip_problem(records, data.corpus_utterances, config.data.max_skip_fraction),
    )
