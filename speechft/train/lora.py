"""LoRA on the LLM: PEFT adapters injected into the frozen Qwen3, merged into plain weights at export.

`apply_lora` wraps the LLM's target Linear layers in place with `peft.inject_adapter_in_model`, so
`model.llm` stays the transformers Qwen3ForCausalLM that FunASRNano's and speechft's forward code
call (`llm.model(...)`, `llm.get_output_embeddings()`); only the wrapped layers change, their base
weight moving to `<layer>.base_layer.weight` beside `<layer>.lora_A.default.weight` and
`<layer>.lora_B.default.weight`. Checkpoints hold the adapters under these PEFT names.

At export the adapters are folded into the weights (W + (alpha/r)·B·A in fp32, stored in the base
file's dtype), so the output directory is a plain model funasr loads with no extra package; the
unmerged adapters are kept in PEFT's own format in `lora/` for users who stack or swap them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechft.errors import ConfigError
from speechft.io import atomic
from speechft.train.config import LoraConfig

LORA_FOLDER = "lora"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
# PEFT's adapter name when none is given; checkpoint keys carry it, PEFT's saved files do not.
ADAPTER_NAME = "default"
_A, _B = f".lora_A.{ADAPTER_NAME}.weight", f".lora_B.{ADAPTER_NAME}.weight"
# PeftModel.from_pretrained expects keys as a PeftModel wrapping the LLM names them.
PEFT_PREFIX = "base_model.model."
LLM_PREFIX = "llm."


def is_adapter_name(name: str) -> bool:
    """Whether a parameter or state-dict name is a LoRA adapter tensor (`...lora_A.default.weight`)."""
    return ".lora_A." in name or ".lora_B." in name or ".lora_dropout." in name


def plain_name(name: str) -> str | None:
    """The name a tensor has in a plain model (no adapters): None for adapter tensors, and a
    wrapped layer's `base_layer.` dropped."""
    if is_adapter_name(name):
        return None
    return name.replace(".base_layer.", ".")


def peft_config(settings: LoraConfig) -> Any:
    import peft

    return peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: Any, settings: LoraConfig, seed: int) -> int:
    """Inject adapters into `model.llm`'s target layers; return how many layers got one.

    The adapters start from `seed` alone: every rank and every run with the same seed starts from
    the same A (B is zero, so the model's output is unchanged), and the global RNG streams that
    dropout and dither draw from are left where they were.
    """
    import peft
    import torch

    linear_names = sorted({name.rsplit(".", 1)[-1] for name, module in model.llm.named_modules() if isinstance(module, torch.nn.Linear)})
    missing = [name for name in settings.target_modules if name not in linear_names]
    if missing:
        raise ConfigError(f"lora.target_modules: {', '.join(missing)} is no Linear layer of the LLM; choose among {', '.join(linear_names)}")
    devices = [model.llm.device.index or 0] if model.llm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(peft_config(settings), model.llm, adapter_name=ADAPTER_NAME)
    return sum(1 for name, _ in model.llm.named_modules() if name.endswith(".lora_A"))


def adapter_parameter_count(model: Any) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if is_adapter_name(name))


def train_adapter_dropout(model: Any) -> None:
    """Adapter dropout on while training, although the frozen LLM around it stays in eval mode."""
    for name, module in model.named_modules():
        if name.endswith(".lora_dropout"):
            module.train()


def activation_values_per_token(model: Any) -> int:
    """Values each adapted layer keeps for backward, per token: its (dropped-out) input and A·x."""
    import torch

    total = 0
    for name, module in model.named_modules():
        if name.endswith(".base_layer") and isinstance(module, torch.nn.Linear):
            rank = 0
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            for adapter in parent.lora_A.values():
                rank += adapter.out_features
            total += module.in_features + rank
    return total


def merged_deltas(states: Sequence[dict[str, Any]], settings: LoraConfig) -> dict[str, Any]:
    """Mean over checkpoints of (alpha/r)·B_k·A_k per adapted weight, keyed by its plain name (fp32).

    The products are averaged, not A and B separately: the mean of B_k·A_k is what an average of
    the merged models holds, while B̄·Ā is not (a product of averages is no average of products).
    """
    import torch

    scale = settings.alpha / settings.rank
    total: dict[str, Any] = {}
    for state in states:
        layers = [name[: -len(_A)] for name in state if name.endswith(_A)]
        for layer in layers:
            down, up = state[layer + _A].to(torch.float32), state[layer + _B].to(torch.float32)
            total[layer + ".weight"] = total.get(layer + ".weight", 0) + (scale * (up @ down)).to(torch.float64)
    return {name: (delta / len(states)).to(torch.float32) for name, delta in total.items()}


def merge_into(base: Any, delta: Any) -> Any:
    """W + delta computed in fp32, returned in W's dtype (the base file's)."""
    import torch

    return (base.to(torch.float32) + delta).to(base.dtype)


def peft_state(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's adapters under the keys PEFT writes for a PeftModel over the LLM (fp32, contiguous)."""
    import torch

    renamed = {}
    for name, tensor in state.items():
        if name.endswith((_A, _B)) and name.startswith(LLM_PREFIX):
            key = PEFT_PREFIX + name[len(LLM_PREFIX) :].replace(f".{ADAPTER_NAME}.weight", ".weight")
            renamed[key] = tensor.detach().to("cpu", torch.float32).contiguous()
    return renamed


def save_adapters(directory: Path, state: dict[str, Any], settings: LoraConfig, *, source: str) -> Path:
    """Write `directory` in PEFT's format (`adapter_model.safetensors` + `adapter_config.json`),
    loadable with `PeftModel.from_pretrained(qwen3_llm, directory)`; `source` (the checkpoint the
    adapters come from) is recorded in the safetensors metadata."""
    from safetensors.torch import save_file

    tensors = peft_state(state)
    if not tensors:
        raise ConfigError(f"{source}: the checkpoint holds no LoRA adapters; was it written with lora.enabled=true?")
    config = peft_config(settings)
    with atomic.atomic_directory(directory) as temporary:
        save_file(tensors, str(temporary / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt", "source": source})
        config.save_pretrained(str(temporary))  # PEFT's own writer of adapter_config.json
    return directory
