"""AdamW over the trainable parameters, and the learning-rate schedule: warmup scaled to the run, then decay."""

from __future__ import annotations

import math
from typing import Any

from speechft.train.config import TrainConfig


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
    """(AdamW, LambdaLR) over the parameters that train; frozen ones carry no optimizer state."""
    import torch

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.optim.lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)
    warmup = warmup_steps_for(config, total_steps)
    schedule = config.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, warmup_steps=warmup, total_steps=total_steps, decay=schedule.decay, min_ratio=schedule.min_lr_ratio),
    )
    return optimizer, scheduler
