"""Batched greedy decoding of Fun-ASR-Nano, the way funasr decodes one utterance at a time.

Prompts are left-padded so every row's last prompt token sits at the same position; position ids
count real tokens only, so a padded row sees the positions it would see alone. Generation stops
at `<|im_end|>` or after `max_new_tokens` (an untrained or confused model otherwise loops).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from speechft.model.build import CHAT_SYSTEM_PROMPT, ModelBundle
from speechft.model.inputs import compute_features, embed_inputs, features_token_count, pad_features, prompt_ids


def clean_text(text: str) -> str:
    """Whitespace runs become one space, as funasr's result text."""
    return re.sub(r"\s+", " ", text).strip()


def _left_padded_prompts(tokenizer: Any, prompts: Sequence[str], token_counts: Sequence[int], systems: Sequence[str], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    rows, starts = [], []
    for prompt, count, system in zip(prompts, token_counts, systems):
        ids, start = prompt_ids(tokenizer, prompt, count, system=system)
        rows.append(ids)
        starts.append(start)
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    audio_starts = torch.zeros(len(rows), dtype=torch.long)
    for index, ids in enumerate(rows):
        offset = width - len(ids)
        input_ids[index, offset:] = torch.tensor(ids, dtype=torch.long)
        attention_mask[index, offset:] = 1
        audio_starts[index] = offset + starts[index]
    return input_ids, attention_mask, audio_starts


def _cache_argument(llm: Any) -> str:
    """transformers renamed `past_key_values` to `cache` in 5.x; accept either."""
    return "cache" if "cache" in inspect.signature(llm.forward).parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


# One LFR feature frame covers 60 ms of audio (6 fbank frames of 10 ms).
SECONDS_PER_FEATURE_FRAME = 0.06


def _row_limits(features: Sequence[Any], max_new_tokens: int, tokens_per_second: float | None) -> Any:
    """The most tokens each row may generate."""
    import torch

    limits = torch.full((len(features),), max_new_tokens, dtype=torch.long)
    if tokens_per_second is not None:
        seconds = torch.tensor([f.shape[0] * SECONDS_PER_FEATURE_FRAME for f in features])
        limits = torch.minimum(limits, (16 + seconds * tokens_per_second).ceil().long())
    return limits


def greedy_decode(
    bundle: ModelBundle,
    waveforms: Sequence[np.ndarray],
    prompts: Sequence[str],
    *,
    system: str | Sequence[str] = CHAT_SYSTEM_PROMPT,
    max_new_tokens: int = 512,
    tokens_per_second: float | None = None,
    features: Sequence[Any] | None = None,
) -> list[str]:
    """Transcribe 16 kHz mono float waveforms with one user prompt each; returns texts in order.

    `tokens_per_second` also bounds each row by its own audio length (`16 + seconds * rate`
    tokens): a model that loops on one utterance then stops there instead of holding the whole
    batch for `max_new_tokens` steps. `system` is one system prompt for all or one per utterance.
    `features` (precomputed fbank+LFR tensors, one per waveform) skips the frontend. The model is
    used as it is (call `model.eval()` first); runs under `torch.inference_mode`, bf16 autocast on
    CUDA.
    """
    import torch

    if len(prompts) != (len(features) if features is not None else len(waveforms)):
        raise ValueError("one prompt per utterance")
    if not prompts:
        return []
    if features is None:
        features = [compute_features(bundle.frontend, waveform) for waveform in waveforms]
    end_id = bundle.end_token_id
    pad_id = bundle.model.llm.config.pad_token_id
    pad_id = end_id if pad_id is None else int(pad_id)
    systems = [system] * len(prompts) if isinstance(system, str) else list(system)
    device = bundle.device
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.inference_mode(), autocast:
        output, attention_mask, position_ids = _prefill(bundle, features, prompts, systems, pad_id)
        limits = _row_limits(features, max_new_tokens, tokens_per_second).to(device)
        tokens = _generate(bundle.model.llm, output, attention_mask, position_ids, limits, max_new_tokens, end_id, pad_id)
    texts = []
    for row in tokens:
        if end_id in row:
            row = row[: row.index(end_id)]
        texts.append(clean_text(bundle.tokenizer.decode(row, skip_special_tokens=True)))
    return texts


def _prefill(bundle: ModelBundle, features: Sequence[Any], prompts: Sequence[str], systems: Sequence[str], pad_id: int) -> tuple[Any, Any, Any]:
    """Run the prompts with their audio through the LLM once: (output with the cache, attention mask, position ids)."""
    import torch

    model, device = bundle.model, bundle.device
    token_counts = [features_token_count(f) for f in features]
    speech, speech_lengths = pad_features(list(features))
    input_ids, attention_mask, audio_starts = _left_padded_prompts(bundle.tokenizer, prompts, token_counts, systems, pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    embeds = embed_inputs(
        model,
        input_ids,
        speech.to(device),
        speech_lengths.to(device),
        audio_starts,
        torch.tensor(token_counts, dtype=torch.long),
    )
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    output = model.llm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    return output, attention_mask, position_ids


def _generate(llm: Any, output: Any, attention_mask: Any, position_ids: Any, limits: Any, max_new_tokens: int, end_id: int, pad_id: int) -> list[list[int]]:
    """Greedy steps after the prefill until every row has ended or hit its limit; token ids per row."""
    import torch

    cache_argument = _cache_argument(llm)
    past = _returned_cache(output)
    next_tokens = output.logits[:, -1, :].argmax(-1)
    finished = torch.zeros(len(next_tokens), dtype=torch.bool, device=next_tokens.device)
    generated: list[Any] = []
    for step in range(max_new_tokens):
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_id), next_tokens)
        generated.append(next_tokens)
        finished = finished | (next_tokens == end_id) | (limits <= step + 1)
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, (~finished).long()[:, None]], dim=1)
        position_ids = position_ids[:, -1:] + 1
        output = llm(input_ids=next_tokens[:, None], attention_mask=attention_mask, position_ids=position_ids, use_cache=True, **{cache_argument: past})
        past = _returned_cache(output)
        next_tokens = output.logits[:, -1, :].argmax(-1)
    return torch.stack(generated, dim=1).tolist() if generated else [[] for _ in range(len(next_tokens))]
