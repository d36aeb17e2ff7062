"""Speed switches of the training config: activation checkpointing and torch.compile.

Both change how the model computes, not what: the loss and the gradients stay the same. Both are
off by default: checkpointing trades compute for memory (bench/train.py measured it several times
slower on CPU), and compiling costs minutes up front and recompiles for new batch shapes.
"""

from __future__ import annotations

from typing import Any

from speechft.train.config import TrainConfig


def repeated_layers(model: Any) -> list[Any]:
    """The encoder blocks and LLM decoder layers: the modules whose activations fill memory."""
    encoder = model.audio_encoder
    layers = [*getattr(encoder, "encoders0", []), *getattr(encoder, "encoders", []), *getattr(encoder, "tp_encoders", [])]
    return layers + list(model.llm.model.layers)


def enable_activation_checkpointing(model: Any) -> int:
    """Make every repeated layer recompute its activations in backward; returns how many layers.

    The wrapper replaces the instance's `forward`, so parameter names and checkpoints do not
    change. It checkpoints only while autograd records: a frozen encoder runs under no_grad and
    validation too, where there is nothing to keep. Calling it twice changes nothing.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    count = 0
    for layer in repeated_layers(model):
        if getattr(layer, "speechft_checkpointed", False):
            continue
        forward = layer.forward

        def checkpointed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                # Non-reentrant: works with keyword arguments and replays dropout with the same RNG state.
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        layer.forward = checkpointed
        layer.speechft_checkpointed = True
        count += 1
    return count


def compile_modules(model: Any) -> list[Any]:
    """`torch.compile` the encoder and the LLM's decoder stack in place (names and state_dict keys
    unchanged; compiling happens at their first call). Returns the compiled modules."""
    modules = [model.audio_encoder, model.llm.model]
    for module in modules:
        module.compile()
    return modules


def apply_speed_switches(model: Any, config: TrainConfig) -> None:
    """Apply `activation_checkpointing` and `compile` from the config (after freezing)."""
    if config.activation_checkpointing:
        enable_activation_checkpointing(model)
    if config.compile:
        compile_modules(model)
