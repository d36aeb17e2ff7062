"""The small values the training loop works over: its resumable counters and what setup built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speechft.model.build import ModelBundle
from speechft.train import distributed as dist_tools
from speechft.train.config import TrainConfig
from speechft.train.corpus import TrainData
from speechft.train.run_dir import TrainRequest


@dataclass
class TrainState:
    """Counters that, with model/optimizer/scheduler/RNG state, make a run resumable."""

    step: int = 0
    epoch: int = 0
    # Global batches of the epoch consumed (all ranks), as dealt to this run's number of ranks ...
    batch_in_epoch: int = 0
    # ... after these [world size, global batches] of the epoch trained on other numbers of ranks.
    epoch_segments: list[list[int]] = field(default_factory=list)
    audio_seconds: float = 0.0
    skipped_samples: int = 0  # distinct utterances skipped (a bad file fails again every epoch)
    skipped_keys: list[str] = field(default_factory=list)
    nonfinite_steps: int = 0
    nonfinite_in_a_row: int = 0
    last_validated_step: int = -1
    first_epoch_samples: int = 0  # utterances that went into an update during epoch 0, all ranks
    best_val_cer: float | None = None  # early stopping's reference
    best_val_step: int = 0
    validations_without_gain: int = 0
    early_stopped: bool = False
    loss_scale: float = 2.0**16  # fp16 only: the dynamic loss scale and the clean steps since it last changed
    loss_scale_good_steps: int = 0


@dataclass
class Run:
    """What the loop works with, built once by `loop.setup`."""

    request: TrainRequest
    config: TrainConfig
    world: dist_tools.World
    bundle: ModelBundle
    data: TrainData
    forward_module: Any  # TrainForward, maybe inside DDP or sharded by FSDP2
    optimizer: Any
    scheduler: Any
    total_steps: int
    autocast_dtype: Any
    validate_every: int = 0  # optimizer steps between validations inside epochs (0: epoch ends only)
    loss_scale: Any = None  # LossScale under fp16
