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

from speechft.errors import InputError
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


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    train_state: dict[str, Any],
    sampler_state: dict[str, Any],
    val_cer: float | None,
    val_loss: float | None,
) -> CheckpointInfo:
    """Write `checkpoints/step-NNNNNN/` atomically (temp folder, then rename) and return its info."""
    import torch

    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    temporary = root / f".tmp-{checkpoint_name(step)}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    torch.save(trainable_state(model), temporary / TRAINABLE_FILE)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "train_state": train_state,
            "sampler": sampler_state,
            "rng": rng_state(),
        },
        temporary / STATE_FILE,
    )
    meta = {"step": step, "val_cer": val_cer, "val_loss": val_loss}
    (temporary / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _fsync_dir(temporary)
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
    """Trainable weights of the selection; `avg:K` averages the K best element-wise."""
    import torch

    chosen = selected_checkpoints(run_dir, select)
    total: dict[str, Any] = {}
    for info in chosen:
        state = torch.load(info.path / TRAINABLE_FILE, map_location="cpu", weights_only=True)
        for name, tensor in state.items():
            total[name] = total.get(name, 0) + tensor.to(torch.float64)
    averaged = {name: (tensor / len(chosen)).to(torch.float32) for name, tensor in total.items()}
    return averaged, chosen


def load_checkpoint(path: Path, *, model: Any, optimizer: Any = None, scheduler: Any = None) -> dict[str, Any]:
    """Restore weights (and optimizer/scheduler when given) from a checkpoint; return its state."""
    import torch

    weights = torch.load(path / TRAINABLE_FILE, map_location="cpu", weights_only=True)
    parameters = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(parameters))
    if unknown:
        raise InputError(f"{path}: weights for parameters this model lacks ({', '.join(unknown[:5])})")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


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
