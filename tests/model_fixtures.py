"""Tiny model directories shared by model, decode and training tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def make_talkative(tiny_dir: Path, directory: Path, seed: int = 1) -> Path:
    """A copy of a tiny model with noisier LLM weights, so greedy decoding emits text instead of
    stopping at once; ids 0 and 1 (`<|endoftext|>`, `<|im_start|>`) are never produced."""
    import torch

    shutil.copytree(tiny_dir, directory)
    state = torch.load(directory / "model.pt")
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if name.startswith("llm.") and tensor.ndim == 2:
            state[name] = tensor + 0.3 * torch.randn(tensor.shape, generator=generator)
    for name in ("llm.model.embed_tokens.weight", "llm.lm_head.weight"):
        state[name][:2] = 0
    torch.save(state, directory / "model.pt")
    return directory
