"""The output directory as a model directory: the selected checkpoint(s) exported.

At the end of a run the output directory becomes a complete model directory loadable by speechft
and funasr.AutoModel: `config.yaml`, `configuration.json`, `Qwen3-0.6B/` (config and tokenizer
only) copied from the base, the prompt the data was written with, and a `model.pt` holding every
weight (LLM included) of the checkpoint(s) `checkpoint.select` names; a LoRA run's adapters are
merged into those weights and also kept unmerged in `lora/` (PEFT's format).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechft.data.manifest import TrainSource
from speechft.data.prompts import sidecar_path_for
from speechft.errors import InputError, TrainingError
from speechft.io import atomic
from speechft.model.build import CONFIG_FILE, CONFIGURATION_FILE, LLM_FOLDER, WEIGHTS_FILE, ModelBundle, read_state_dict
from speechft.train.checkpoint import CHECKPOINTS, TRAINABLE_FILE, CheckpointInfo, best_checkpoints, list_checkpoints
from speechft.train.config import LoraConfig
from speechft.train.lora import LORA_FOLDER, is_adapter_name, merge_into, merged_deltas, plain_name, save_adapters

# Small files of the base directory the output needs besides config, weights and LLM folder.
EXTRA_MODEL_FILES = ("multilingual.tiktoken", "am.mvn")
PROMPT_FILE = "prompt.json"


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
    parts = [
        f"only in {info.path.name}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''} ({len(keys)})"
        for info, keys in ((first, only_first), (other, only_other))
        if keys
    ]
    return (
        f"checkpoint.select {select}: {first.path} and {other.path} hold different weights ({'; '.join(parts)}); "
        "they were written by runs that trained different modules. Average checkpoints of one run only: "
        "remove the foreign ones, or use checkpoint.select=best or last"
    )


def write_model_dir(output_dir: Path, base_dir: Path, full_state: dict[str, Any]) -> Path:
    """Make `output_dir` a model directory loadable by speechft and funasr.AutoModel."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, CONFIGURATION_FILE, *EXTRA_MODEL_FILES):
        if (base_dir / name).exists():
            shutil.copy2(base_dir / name, output_dir / name)
    if (base_dir / LLM_FOLDER).is_dir():
        with atomic.atomic_directory(output_dir / LLM_FOLDER) as temporary:
            # Config and tokenizer files only: the weights live in model.pt.
            ignore = shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt")
            shutil.copytree(base_dir / LLM_FOLDER, temporary, ignore=ignore, dirs_exist_ok=True)
    atomic.torch_save(full_state, output_dir / WEIGHTS_FILE)
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
    model: Any,
    base_state: dict[str, Any],
    trained: dict[str, Any],
    whole: dict[str, Any] | None = None,
    *,
    llm_dtype: Any = None,
    lora_deltas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fine-tuned `model.pt`: every tensor of the base file exactly as it was stored there
    (bit for bit, dtype included), except the trained ones. Trained encoder and adaptor tensors are
    stored in fp32 (funasr runs them in fp32; small fine-tuning updates would round away in bf16);
    trained LLM tensors in `llm_dtype` (`llm_conf.llm_dtype`, bf16 in the release), the precision
    funasr.AutoModel holds the LLM in, so both stacks decode the very same weights. A name tied to
    a trained parameter (Qwen3's `lm_head`) gets the same trained value, so `best`/`avg:K`
    selections reach it too.

    `lora_deltas` (plain weight name -> (alpha/r)·B·A, fp32) are merged: W + delta computed in
    fp32 and stored in W's dtype in the base file, so the output is a plain model; adapter tensors
    never reach it, and a wrapped layer's weight keeps its plain name (no `base_layer.`).

    Keys the model has and the base file lacks (a load with --allow-missing) come from `whole`
    (gathered FSDP weights) or the model; nothing else is added, so a base file without a CTC head
    gives an output without one.
    """
    import torch

    whole = _plain(whole or {})
    lora_deltas = lora_deltas or {}
    aliases = tied_aliases(model)
    model_state = _plain(model.state_dict())
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
        if name in lora_deltas:
            value = merge_into(value, lora_deltas[name])
        exported[name] = value.contiguous().clone()
    unmerged = sorted(set(lora_deltas) - set(exported))
    if unmerged:
        raise TrainingError(f"LoRA adapters for weights the model does not have ({', '.join(unmerged[:3])}); the checkpoints belong to another model")
    return exported


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """`state` under the names of a plain model: adapters dropped, `base_layer.` taken out."""
    renamed = {}
    for name, tensor in state.items():
        plain = plain_name(name)
        if plain is not None:
            renamed[plain] = tensor
    return renamed


def export_model(
    run_dir: Path, bundle: ModelBundle, select: str, whole: dict[str, Any] | None = None, *, lora: LoraConfig | None = None
) -> list[CheckpointInfo]:
    """Write `run_dir`'s model.pt (and the rest of the model directory) from the `select`ed
    checkpoint(s) over `bundle`'s base weights; return the checkpoints used.

    With `lora.enabled`, the adapters of every selected checkpoint are merged (the mean of their
    (alpha/r)·B·A products) and the first selected checkpoint's adapters, the best one for `best`
    and `avg:K` and the last for `last`, are written unmerged to `lora/` in PEFT's format.
    """
    import torch

    weights, chosen = selected_weights(run_dir, select)
    deltas = None
    if lora is not None and lora.enabled:
        states = [torch.load(info.path / TRAINABLE_FILE, map_location="cpu", weights_only=True) for info in chosen]
        deltas = merged_deltas(states, lora)
        weights = {name: tensor for name, tensor in weights.items() if not is_adapter_name(name)}
        save_adapters(run_dir / LORA_FOLDER, states[0], lora, source=chosen[0].path.name)
    base = read_state_dict(bundle.weights_path, mmap=True)
    write_model_dir(run_dir, bundle.model_dir, export_state(bundle.model, base, weights, whole, llm_dtype=bundle.llm_dtype, lora_deltas=deltas))
    return chosen


def copy_prompt_policy(train: Sequence[TrainSource], run_dir: Path) -> None:
    """Keep the prompt the data was written with beside the model: decoding must use the same one."""
    for source in train:
        sidecar = sidecar_path_for(source.path)
        if sidecar.exists():
            shutil.copy2(sidecar, run_dir / PROMPT_FILE)
            return
