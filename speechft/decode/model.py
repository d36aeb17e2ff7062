"""The model side of decoding: a loaded model directory as a batched transcriber."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechft.model.build import ModelBundle
from speechft.model.generate import greedy_decode


def resolve_device(device: str) -> str:
    """`auto` is CUDA when present, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ModelTranscriber:
    """Greedy batched decoding with a loaded model (bf16 autocast on CUDA, fp32 on CPU)."""

    bundle: ModelBundle
    max_new_tokens: int = 512
    tokens_per_second: float | None = None

    def transcribe(self, waveforms: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        return greedy_decode(self.bundle, waveforms, prompts, max_new_tokens=self.max_new_tokens, tokens_per_second=self.tokens_per_second)


def load_transcriber(
    model_dir: str,
    *,
    device: str = "auto",
    max_new_tokens: int = 512,
    tokens_per_second: float | None = None,
    allow_missing: bool = False,
) -> Any:
    from speechft.model.build import load_model

    bundle = load_model(model_dir, device=resolve_device(device), allow_missing=allow_missing)
    return ModelTranscriber(bundle, max_new_tokens, tokens_per_second)
