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
    """(device, autocast dtype or None) for `device`: by default bf16 autocast on CUDA (fp16 where the GPU lacks bf16), fp32 on CPU.

    fp16 is for GPUs without bf16 (V100, T4); its gradients need a loss scale (:mod:`speechft.train.step`)."""
    import torch

    precision = config.precision
    bf16_hardware = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        precision = "fp32" if device.type != "cuda" else "bf16" if bf16_hardware else "fp16"
    if precision == "bf16" and device.type == "cpu":
        raise ConfigError("precision: bf16 autocast is for CUDA; use fp32 on CPU")
    if precision == "bf16" and not bf16_hardware:
        raise ConfigError(f"precision: bf16: {torch.cuda.get_device_name(device)} has no bf16 support; use precision=fp16 (or fp32)")
    return device, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def precision_name(autocast_dtype: Any) -> str:
    import torch

    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast with a dynamic loss scale"}.get(autocast_dtype, "fp32")
