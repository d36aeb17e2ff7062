"""Checkpoints: save, list, prune, resume.

`checkpoints/step-000400/` holds what resuming needs: the *trainable* weights (frozen ones never
change, so they are not written again every save), optimizer, scheduler, the training counters
and every rank's RNG state, and `meta.json` with the validation scores. Every write goes to a
temporary folder renamed into place, so a kill mid-write leaves the previous checkpoints intact.
Turning the selected checkpoint(s) into the output model directory is :mod:`speechft.train.export`.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechft.errors import InputError, TrainingError
from speechft.io import atomic
from speechft.train import distributed as dist_tools

CHECKPOINTS = "checkpoints"
TRAINABLE_FILE = "trainable.pt"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    val_cer: float | None
    val_loss: float | None

    @property
    def rank_key(self) -> tuple[float, float, int]:
        """Sort key for 'best': lowest CER, then lowest loss, then the later step."""
        cer = self.val_cer if self.val_cer is not None else math.inf
        loss = self.val_loss if self.val_loss is not None else math.inf
        return (cer, loss, -self.step)


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainable_state(model: Any) -> dict[str, Any]:
    """Copies (on CPU) of the parameters that train."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def training_snapshot(model: Any, forward_module: Any, optimizer: Any, world: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainable weights, optimizer state) as whole CPU tensors, on rank 0; empty on other ranks.

    With FSDP every rank must call this at the same point: each holds a shard and the whole
    tensors are gathered to rank 0. The optimizer state is then keyed by parameter name, not by
    position, because positions are those of the sharded parameters.
    """
    if world.sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        weights = get_model_state_dict(forward_module, options=options)
        optimizer_state = get_optimizer_state_dict(forward_module, optimizer, options=options)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        return {name: tensor for name, tensor in weights.items() if name in trainable}, optimizer_state
    if not world.is_main:
        return {}, {}
    if optimizer_format_for(world) == "by_name":  # FSDP on one rank: keyed as the sharded runs key it
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return trainable_state(model), get_optimizer_state_dict(forward_module, optimizer, options=StateDictOptions(full_state_dict=True))
    return trainable_state(model), optimizer.state_dict()


def whole_weights(forward_module: Any, world: Any) -> dict[str, Any]:
    """Every weight of an FSDP-sharded module as whole CPU tensors on rank 0 (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(forward_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def all_finite(weights: dict[str, Any]) -> bool:
    import torch

    return all(bool(torch.isfinite(tensor).all()) for tensor in weights.values())


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    weights: dict[str, Any],
    optimizer_state: dict[str, Any],
    scheduler: Any,
    train_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    optimizer_format: str,
    world_size: int,
    val_cer: float | None,
    val_loss: float | None,
) -> CheckpointInfo:
    """Write `checkpoints/step-NNNNNN/` atomically (temp folder, then rename) and return its info.

    Called on rank 0 only. Weights with a NaN or infinity are refused: a poisoned checkpoint would
    become the run's model. A failed write (disk full) removes the partial folder and leaves every
    earlier checkpoint as it was; the same step written again (the end of training right after a
    periodic save) replaces the earlier folder whole.
    """
    import torch

    if not all_finite(weights):
        raise TrainingError(f"step {step}: the weights hold NaN or infinite values; no checkpoint written (the last good one stays)")
    final = run_dir / CHECKPOINTS / checkpoint_name(step)
    state = {
        "optimizer": optimizer_state,
        "optimizer_format": optimizer_format,
        "scheduler": scheduler.state_dict(),
        "train_state": train_state,
        "rng": rng_states,
        "world_size": world_size,
    }
    try:
        with atomic.atomic_directory(final) as temporary:
            torch.save(weights, temporary / TRAINABLE_FILE)
            torch.save(state, temporary / STATE_FILE)
            meta = {"step": step, "val_cer": val_cer, "val_loss": val_loss, "world_size": world_size, "position": position_of(train_state)}
            (temporary / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        where = final.with_name(atomic.TEMP_PREFIX + final.name)
        raise TrainingError(f"{where}: cannot write checkpoint ({error.strerror or error}); earlier checkpoints are intact") from None
    return CheckpointInfo(final, step, val_cer, val_loss)


def save_training_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: Any,
    forward_module: Any,
    optimizer: Any,
    scheduler: Any,
    world: dist_tools.World,
    train_state: dict[str, Any],
    keep_last: int,
    keep_best: int,
    val_cer: float | None,
    val_loss: float | None,
) -> None:
    """Every rank: gather what a checkpoint holds (FSDP shards, each rank's RNG); rank 0 writes it and prunes."""
    weights, optimizer_state = training_snapshot(model, forward_module, optimizer, world)
    rng_states = dist_tools.gather_to_main(world, rng_state())
    if not world.is_main:
        return
    save_checkpoint(
        run_dir,
        step,
        weights=weights,
        optimizer_state=optimizer_state,
        scheduler=scheduler,
        train_state=train_state,
        rng_states=rng_states,
        optimizer_format=optimizer_format_for(world),
        world_size=world.world_size,
        val_cer=val_cer,
        val_loss=val_loss,
    )
    prune_checkpoints(run_dir, keep_last=keep_last, keep_best=keep_best)


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = run_dir / CHECKPOINTS
    found = []
    for path in sorted(root.glob("step-*")) if root.is_dir() else []:
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (path / TRAINABLE_FILE).exists() and (path / STATE_FILE).exists():
            found.append(CheckpointInfo(path, int(meta["step"]), meta.get("val_cer"), meta.get("val_loss")))
    return sorted(found, key=lambda info: info.step)


def best_checkpoints(checkpoints: list[CheckpointInfo], count: int) -> list[CheckpointInfo]:
    scored = [c for c in checkpoints if c.val_cer is not None or c.val_loss is not None]
    return sorted(scored or checkpoints, key=lambda c: c.rank_key)[:count]


def prune_checkpoints(run_dir: Path, *, keep_last: int, keep_best: int) -> list[Path]:
    """Delete all but the last `keep_last` and the best `keep_best` checkpoints; return the deleted."""
    checkpoints = list_checkpoints(run_dir)
    keep = {c.path for c in checkpoints[-keep_last:]} | {c.path for c in best_checkpoints(checkpoints, keep_best)}
    removed = []
    for checkpoint in checkpoints:
        if checkpoint.path not in keep:
            shutil.rmtree(checkpoint.path)
            removed.append(checkpoint.path)
    return removed


def load_checkpoint(path: Path, *, model: Any) -> dict[str, Any]:
    """Restore the trainable weights of a checkpoint into `model` (not sharded); return its state."""
    import torch

    weights = torch.load(path / TRAINABLE_FILE, map_location="cpu", weights_only=True)
    _copy_weights(model, weights, path)
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)


def _copy_weights(model: Any, weights: dict[str, Any], path: Path) -> None:
    import torch

    parameters = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(parameters))
    if unknown:
        raise InputError(f"{path}: weights for parameters this model lacks ({', '.join(unknown[:5])})")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)


def restore_training(path: Path, *, model: Any, forward_module: Any, optimizer: Any, scheduler: Any, world: Any) -> dict[str, Any]:
    """Every rank: weights, optimizer and scheduler of a checkpoint; return its saved state.

    Each rank reads the files (the run directory is shared by all nodes). Under FSDP each rank
    keeps only its shard of the whole tensors it read.
    """
    import torch

    weights = torch.load(path / TRAINABLE_FILE, map_location="cpu", weights_only=True)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    wanted = optimizer_format_for(world)
    found = state.get("optimizer_format", "positional")
    if found != wanted and world.world_size > 1:  # one rank loads either format
        strategy = "fsdp" if found == "by_name" else "ddp"
        raise InputError(f"{path}: written with distributed.strategy={strategy}; resume with the same strategy")
    if world.sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        unknown = sorted(set(weights) - {name for name, _ in model.named_parameters()})
        if unknown:
            raise InputError(f"{path}: weights for parameters this model lacks ({', '.join(unknown[:5])})")
        set_model_state_dict(forward_module, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        set_optimizer_state_dict(forward_module, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    else:
        _copy_weights(model, weights, path)
        if found == "by_name":  # an FSDP run's, resumed on one rank
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(forward_module, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def optimizer_format_for(world: Any) -> str:
    """How a checkpoint keys optimizer state: by name under FSDP (also on one rank, so the
    checkpoint resumes on any number of ranks), by position otherwise."""
    return "by_name" if world.sharded or getattr(world, "strategy", "ddp") == "fsdp" else "positional"


def resume_point(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint folder `--resume` names: none for `off`, the latest in `run_dir` for `auto` (none
    when there is none yet), else the path, which must be a checkpoint folder."""
    if resume == "off":
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        return found[-1].path if found else None
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise InputError(f"--resume {path}: not a checkpoint folder (no {STATE_FILE})")
    return path


POSITION_KEYS = ("step", "epoch", "batch_in_epoch", "epoch_segments")


def position_of(train_state: dict[str, Any]) -> dict[str, Any]:
    """Where in the data a run stands: its step, epoch and global place in the epoch."""
    return {key: train_state.get(key, [] if key == "epoch_segments" else 0) for key in POSITION_KEYS}


def _global_position(counters: dict[str, Any], saved_world_size: int) -> dict[str, Any]:
    """Counters with a global `batch_in_epoch`: checkpoints without `epoch_segments` counted this rank's batches."""
    if "epoch_segments" in counters:
        return counters
    return {**counters, "batch_in_epoch": counters.get("batch_in_epoch", 0) * saved_world_size, "epoch_segments": []}


def _moved(counters: dict[str, Any], saved_world_size: int, world_size: int) -> dict[str, Any]:
    """The counters as a run on `world_size` ranks continues them: what the saved world consumed of
    the epoch becomes an earlier segment, and the rest of the epoch is re-dealt from 0."""
    counters = _global_position(counters, saved_world_size)
    if saved_world_size == world_size or not counters["batch_in_epoch"]:
        return counters
    segments = [*counters["epoch_segments"], [saved_world_size, counters["batch_in_epoch"]]]
    return {**counters, "batch_in_epoch": 0, "epoch_segments": segments}


def moved_position(path: Path, world_size: int) -> dict[str, Any] | None:
    """The position of checkpoint `path` (meta.json, else state.pt) as `world_size` ranks continue
    it; None when it was written by as many ranks (nothing moves)."""
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    if "position" in meta:
        saved_world_size, counters = int(meta["world_size"]), meta["position"]
    else:
        import torch

        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        saved_world_size, counters = int(state.get("world_size", 1)), state["train_state"]
    if saved_world_size == world_size:
        return None
    return position_of(_moved(counters, saved_world_size, world_size))


def resume_training(path: Path, *, model: Any, forward_module: Any, optimizer: Any, scheduler: Any, world: dist_tools.World) -> dict[str, Any]:
    """Every rank: weights, optimizer, scheduler and this rank's RNG state from a checkpoint; returns
    the saved training counters, their place in the epoch moved to this world size.

    A rank the checkpoint has no RNG state for (more ranks now than then) starts fresh streams of
    its own; the data each rank trains next depends only on the global place in the epoch."""
    saved = restore_training(path, model=model, forward_module=forward_module, optimizer=optimizer, scheduler=scheduler, world=world)
    rng_states = saved["rng"] if isinstance(saved["rng"], list) else [saved["rng"]]
    saved_world_size = int(saved.get("world_size", len(rng_states)))
    counters = _moved(saved["train_state"], saved_world_size, world.world_size)
    if world.rank < len(rng_states):
        restore_rng_state(rng_states[world.rank])
    else:
        seed_everything(counters["step"] * 1009 + world.rank)
    return counters
