"""How a run holds the model: which modules train (gradients, dropout mode, parameter counts) and
the precision it computes in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speechft.errors import ConfigError
from speechft.model.build import module_of
from speechft.train.config import TrainConfig
from speechft.train.lora import is_adapter_name, train_adapter_dropout

MODULE_ATTRIBUTES = {"encoder": "audio_encoder", "adaptor": "audio_adaptor", "llm": "llm"}


@dataclass
class ModuleCount:
    trainable: int = 0
    frozen: int = 0


def apply_trainable(model: Any, trainable: Sequence[str]) -> dict[str, ModuleCount]:
    """Set `requires_grad` by module (the CTC head never trains); count parameters per module.

    LoRA adapters (present when the run applied them) always train and count as module `lora`;
    the LLM weights they wrap count as `llm`.
    """
    counts: dict[str, ModuleCount] = {}
    for name, parameter in model.named_parameters():
        module = "lora" if is_adapter_name(name) else module_of(name)
        parameter.requires_grad = module in trainable or module == "lora"
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
    train_adapter_dropout(model)


def autocast_for(config: TrainConfig, device: Any) -> tuple[Any, Any]:
    """(device, autocast dtype or None) for `device`: bf16 autocast on CUDA by default, fp32 on CPU."""
    import torch

    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu":
        raise ConfigError("precision: bf16 autocast is for CUDA; use fp32 on CPU")
    return device, (torch.bfloat16 if precision == "bf16" else None)
