"""When training ends early and how often it validates: early stopping on the validation CER
(`validation.patience`) and a validation cadence that scales with a short run's length
(`validation.min_validations`), so a run on a small corpus can pick its best step."""

from __future__ import annotations

import math
from typing import Any

from speechft import console
from speechft.train.config import TrainConfig
from speechft.train.plan import plan_steps
from speechft.train.state import Run, TrainState


def validation_cadence(config: TrainConfig, data: Any, total_steps: int) -> int:
    """Steps between validations inside epochs (0: epoch ends only): `validation.every_steps`, made
    shorter when epoch ends and that setting together would validate fewer than
    `validation.min_validations` times over the run."""
    every = config.validation.every_steps
    wanted = config.validation.min_validations
    if not wanted:
        return every
    epochs = min(config.max_epochs, math.ceil(total_steps / max(plan_steps(config, data)[1], 1)))
    validations = max(epochs, total_steps // every if every else 0)
    if validations >= wanted:
        return every
    return max(1, total_steps // wanted)


def note_validation(run: Run, state: TrainState, cer: float) -> None:
    """Early stopping's account: the best CER so far and the validations since it was reached."""
    if state.best_val_cer is None or cer < state.best_val_cer:
        state.best_val_cer, state.best_val_step, state.validations_without_gain = cer, state.step, 0
        return
    state.validations_without_gain += 1
    patience = run.config.validation.patience
    if patience and state.validations_without_gain >= patience:
        state.early_stopped = True
        if run.world.is_main:
            console.err.print(
                f"early stop at step {state.step}: {patience} validations without a CER below {state.best_val_cer:.2%} (step {state.best_val_step})"
            )


def end_reason(run: Run, state: TrainState) -> str:
    """Why the run ended, in words, for the summary."""
    if state.early_stopped:
        return (
            f"early stop: {run.config.validation.patience} validations in a row without a CER below the best "
            f"{state.best_val_cer:.2%} (step {state.best_val_step})"
        )
    if run.config.max_steps and state.step >= run.config.max_steps:
        return f"max_steps {run.config.max_steps} reached"
    return f"max_epochs {run.config.max_epochs} reached"
