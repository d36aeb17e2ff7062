"""The training loss, and the module DDP and FSDP wrap to compute it.

FunASRNano's own `forward` is funasr's trainer path; speechft computes its loss with the shared
input assembly instead (:func:`batch_loss_sum`), so the distributed wrappers need a module whose
`forward` is that loss. :class:`TrainForward` holds the encoder, adaptor and LLM under their
FunASRNano names (parameter names match the model's) and leaves the CTC head out: it never gets a
gradient, so DDP never waits for one.
"""

from __future__ import annotations

from typing import Any

import torch

from speechft.data.collate import Batch
from speechft.model.inputs import IGNORE_INDEX, embed_inputs


def batch_loss_sum(model: Any, batch: Batch, device: Any, autocast_dtype: Any, *, track_grad: bool) -> Any:
    """Summed cross-entropy over the batch's target tokens (transcript + <|im_end|>).

    Logits are computed only at target positions: the full (batch, seq, vocab) tensor of a
    150k-token vocabulary would dominate memory for nothing.
    """
    import torch.nn.functional as functional

    input_ids = batch.input_ids.to(device)
    attention_mask = batch.attention_mask.to(device)
    labels = batch.labels.to(device)
    with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        embeds = embed_inputs(
            model,
            input_ids,
            batch.speech.to(device),
            batch.speech_lengths.to(device),
            batch.audio_starts,
            batch.audio_token_counts,
            track_grad=track_grad,
        )
        # No KV cache: training never reuses it, and a recomputed (checkpointed) layer would append to it twice.
        hidden = model.llm.model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = model.llm.get_output_embeddings()(hidden[:, :-1][keep])
    return functional.cross_entropy(logits.float(), targets[keep], reduction="sum")


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
        return batch_loss_sum(self, batch, self.run_device, self.autocast_dtype, track_grad=True)
