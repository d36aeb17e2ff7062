"""The module DDP and FSDP wrap: the parts of FunASRNano that can train, and the training loss.

FunASRNano's own `forward` is funasr's trainer path; speechft computes its loss with the shared
input assembly instead, so the distributed wrappers need a module whose `forward` is that loss.
It holds the encoder, adaptor and LLM under their FunASRNano names (parameter names match the
model's) and leaves the CTC head out: it never gets a gradient, so DDP never waits for one.
"""

from __future__ import annotations

from typing import Any

import torch

from speechft.data.collate import Batch


class TrainForward(torch.nn.Module):
    """`forward(batch)` -> summed cross-entropy over the batch's target tokens."""

    def __init__(self, model: Any, device: Any, autocast_dtype: Any) -> None:
        super().__init__()
        self.audio_encoder = model.audio_encoder
        self.audio_adaptor = model.audio_adaptor
        self.llm = model.llm
        self.run_device = device
        self.autocast_dtype = autocast_dtype

    def forward(self, batch: Batch) -> Any:
        from speechft.train.loop import batch_loss_sum

        return batch_loss_sum(self, batch, self.run_device, self.autocast_dtype, track_grad=True)
