"""Checkpoints and the output model directory.

`checkpoints/step-000400/` holds what resuming needs: the *trainable* weights (frozen ones never
change, so they are not written again every save), optimizer, scheduler, sampler and RNG state,
and `meta.json` with the validation scores. Every write goes to a temporary folder renamed into
place, so a kill mid-write leaves the previous checkpoints intact. The output directory becomes a
complete model directory: `config.yaml`, `configuration.json`, `Qwen3-0.6B/` copied from the base
and a `model.pt` holding every weight (LLM included) of the selected checkpoint(s).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechft.errors import InputError, TrainingError
from speechft.model.build import CONFIG_FILE, CONFIGURATION_FILE, LLM_FOLDER, WEIGHTS_FILE

CHECKPOINTS = "checkpoints"
TRAINABLE_FILE = "trainable.pt"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
# Small files of the base directory the output needs besides config, weights and LLM folder.
EXTRA_MODEL_FILES = ("multilingual.tiktoken", "am.mvn")


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


def trainable_state(model: Any) -> dict[str, Any]:
    """Copies (on CPU) of the parameters that train."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
    sampler_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    optimizer_format: str,
    world_size: int,
    val_cer: float | None,
    val_loss: float | None,
) -> CheckpointInfo:
    """Write `checkpoints/step-NNNNNN/` atomically (temp folder, then rename) and return its info.

    Called on rank 0 only. Weights with a NaN or infinity are refused: a poisoned checkpoint would
    become the run's model. A failed write (disk full) removes the partial folder and leaves every
    earlier checkpoint as it was.
    """
    import torch

    if not all_finite(weights):
        raise TrainingError(f"step {step}: the weights hold NaN or infinite values; no checkpoint written (the last good one stays)")
    root = run_dir / CHECKPOINTS
    final = root / checkpoint_name(step)
    temporary = root / f".tmp-{checkpoint_name(step)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
        torch.save(weights, temporary / TRAINABLE_FILE)
        torch.save(
            {
                "optimizer": optimizer_state,
                "optimizer_format": optimizer_format,
                "scheduler": scheduler.state_dict(),
                "train_state": train_state,
                "sampler": sampler_state,
                "rng": rng_states,
                "world_size": world_size,
            },
            temporary / STATE_FILE,
        )
        meta = {"step": step, "val_cer": val_cer, "val_loss": val_loss}
        (temporary / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _fsync_dir(temporary)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise TrainingError(f"{temporary}: cannot write checkpoint ({error.strerror or error}); earlier checkpoints are intact") from None
    if final.exists():
        # Same step written again (e.g. the end of training right after a periodic save).
        stale = root / f".old-{checkpoint_name(step)}"
        final.rename(stale)
        temporary.rename(final)
        shutil.rmtree(stale)
    else:
        temporary.rename(final)
    _fsync_dir(root)
    return CheckpointInfo(final, step, val_cer, val_loss)


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


def selected_checkpoints(run_dir: Path, select: str) -> list[CheckpointInfo]:
    """The checkpoint(s) `select` (best | last | avg:K) names."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise InputError(f"{run_dir / CHECKPOINTS}: no checkpoints to select from")
    if select == "last":
        return [checkpoints[-1]]
    count = int(select.split(":")[1]) if select.startswith("avg:") else 1
    return best_checkpoints(checkpoints, count)


def selected_weights(run_dir: Path, select: str) -> tuple[dict[str, Any], list[CheckpointInfo]]:
    """Trainable weights of the selection; `avg:K` averages the K best element-wise.

    Each tensor is divided by the number of checkpoints holding it, and checkpoints that hold
    different weights (written by runs that trained different modules) are an error rather than an
    average of unlike things.
    """
    import torch

    chosen = selected_checkpoints(run_dir, select)
    total: dict[str, Any] = {}
    holders: dict[str, int] = {}
    first_keys: set[str] | None = None
    for info in chosen:
        state = torch.load(info.path / TRAINABLE_FILE, map_location="cpu", weights_only=True)
        if first_keys is None:
            first_keys = set(state)
        elif set(state) != first_keys:
            raise TrainingError(_key_mismatch(chosen[0], first_keys, info, set(state), select))
        for name, tensor in state.items():
            total[name] = total.get(name, 0) + tensor.to(torch.float64)
            holders[name] = holders.get(name, 0) + 1
    averaged = {name: (tensor / holders[name]).to(torch.float32) for name, tensor in total.items()}
    return averaged, chosen


def _key_mismatch(first: CheckpointInfo, first_keys: set[str], other: CheckpointInfo, other_keys: set[str], select: str) -> str:
    only_first = sorted(first_keys - other_keys)
    only_other = sorted(other_keys - first_keys)
    parts = [f"only in {info.path.name}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''} ({len(keys)})" for info, keys in ((first, only_first), (other, only_other)) if keys]
    return (
        f"checkpoint.select {select}: {first.path} and {other.path} hold different weights ({'; '.join(parts)}); "
        "they were written by runs that trained different modules. Average checkpoints of one run only: "
        "remove the foreign ones, or use checkpoint.select=best or last"
    )


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
    if found != wanted:
        strategy = "fsdp" if found == "by_name" else "ddp (or one rank)"
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
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def optimizer_format_for(world: Any) -> str:
    """How a checkpoint keys optimizer state: by name under FSDP, by position otherwise."""
    return "by_name" if world.sharded else "positional"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    temporary = path.with_name(f".tmp-{path.name}")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def write_model_dir(output_dir: Path, base_dir: Path, full_state: dict[str, Any]) -> Path:
    """Make `output_dir` a model directory loadable by speechft and funasr.AutoModel."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, CONFIGURATION_FILE, *EXTRA_MODEL_FILES):
        if (base_dir / name).exists():
            shutil.copy2(base_dir / name, output_dir / name)
    if (base_dir / LLM_FOLDER).is_dir():
        target = output_dir / LLM_FOLDER
        temporary = output_dir / f".tmp-{LLM_FOLDER}"
        if temporary.exists():
            shutil.rmtree(temporary)
        # Config and tokenizer files only: the weights live in model.pt.
        shutil.copytree(base_dir / LLM_FOLDER, temporary, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt"))
        if target.exists():
            shutil.rmtree(target)
        temporary.rename(target)
    _atomic_torch_save(full_state, output_dir / WEIGHTS_FILE)
    return output_dir / WEIGHTS_FILE


def tied_aliases(model: Any) -> dict[str, str]:
    """Parameter names that share their tensor with an earlier one, mapped to that one.

    Qwen3-0.6B ties `lm_head.weight` to `embed_tokens.weight`: `named_parameters()` (and so the
    optimizer and checkpoints) sees only the first, while a state dict holds both names.
    """
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(parameter), name)
        if owner != name:
            aliases[name] = owner
    return aliases


def export_state(
    model: Any, base_state: dict[str, Any], trained: dict[str, Any], whole: dict[str, Any] | None = None, *, llm_dtype: Any = None
) -> dict[str, Any]:
    """The fine-tuned `model.pt`: every tensor of the base file exactly as it was stored there
    (bit for bit, dtype included), except the trained ones. Trained encoder and adaptor tensors are
    stored in fp32 (funasr runs them in fp32; small fine-tuning updates would round away in bf16);
    trained LLM tensors in `llm_dtype` (`llm_conf.llm_dtype`, bf16 in the release), the precision
    funasr.AutoModel holds the LLM in, so both stacks decode the very same weights. A name tied to
    a trained parameter (Qwen3's `lm_head`) gets the same trained value, so `best`/`avg:K`
    selections reach it too.

    Keys the model has and the base file lacks (a load with --allow-missing) come from `whole`
    (gathered FSDP weights) or the model; nothing else is added, so a base file without a CTC head
    gives an output without one.
    """
    import torch

    whole = whole or {}
    aliases = tied_aliases(model)
    model_state = model.state_dict()
    exported: dict[str, Any] = {}
    for name in [*base_state, *(key for key in model_state if key not in base_state)]:
        source = aliases.get(name, name)
        if source in trained:
            dtype = llm_dtype if llm_dtype is not None and name.startswith("llm.") else torch.float32
            value = trained[source].detach().to("cpu", dtype)
        elif name in base_state:
            value = base_state[name]
        else:
            value = whole.get(name, model_state[name]).detach().to("cpu")
        exported[name] = value.contiguous().clone()
    return exported
