"""The LLM input of Fun-ASR-Nano: ChatML prompt ids with audio positions, and their embeddings.

Shared by training and decoding so both feed the model exactly what funasr's FunASRNano does at
inference (`data_load_speech` / `inference_prepare`): the prompt
`<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{prompt}<AUDIO x n>{suffix}<|im_end|>\\n<|im_start|>assistant\\n`,
each text piece tokenized on its own, and the first `n` adaptor outputs written over the audio
placeholders (UPSTREAM.md §1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speechft.model.build import CHAT_SYSTEM_PROMPT, audio_token_count

IGNORE_INDEX = -100


def prompt_ids(tokenizer: Any, prompt: str, audio_tokens: int, *, system: str = CHAT_SYSTEM_PROMPT, suffix: str = "") -> tuple[list[int], int]:
    """Token ids of the ChatML prompt with `audio_tokens` placeholders; also where the audio starts."""
    head = tokenizer.encode(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}")
    tail = tokenizer.encode(f"{suffix}<|im_end|>\n<|im_start|>assistant\n")
    return head + [0] * audio_tokens + tail, len(head)


def target_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids the model must produce for a transcript: the text, then `<|im_end|>`."""
    return tokenizer.encode(f"{text}<|im_end|>")


def compute_features(frontend: Any, waveform: np.ndarray) -> Any:
    """fbank + LFR features `(frames, 560)` of a 16 kHz mono float waveform, via the model's frontend."""
    import torch

    samples = torch.as_tensor(np.ascontiguousarray(waveform, dtype=np.float32))[None, :]
    features, _ = frontend(samples, [samples.shape[1]])
    return features[0].to(torch.float32)


def features_token_count(features: Any) -> int:
    return audio_token_count(int(features.shape[0]))


def pad_features(features: list[Any]) -> tuple[Any, Any]:
    """Right-pad a list of `(frames, dim)` feature tensors: `(batch, max_frames, dim)` and lengths."""
    import torch

    lengths = torch.tensor([int(f.shape[0]) for f in features], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True, padding_value=0.0)
    return padded, lengths


def encode_audio(model: Any, speech: Any, speech_lengths: Any, *, track_grad: bool) -> Any:
    """Encoder + adaptor outputs `(batch, tokens, llm_dim)` for padded features.

    The encoder scales its input in place, so it gets a copy. Encoder outputs past each length
    are zeroed before the adaptor stacks frames: funasr decodes one utterance at a time, where
    the last stack is zero-padded, and a batch must give the same audio tokens.
    """
    import torch

    encoder = model.audio_encoder
    encoder_trainable = track_grad and any(p.requires_grad for p in encoder.parameters())
    with torch.set_grad_enabled(encoder_trainable):
        encoder_out, encoder_lengths = encoder(speech.clone(), speech_lengths)
    encoder_lengths = encoder_lengths.to(encoder_out.device)
    valid = torch.arange(encoder_out.shape[1], device=encoder_out.device)[None, :] < encoder_lengths[:, None]
    encoder_out = encoder_out * valid[:, :, None].to(encoder_out.dtype)
    # A batch padded past its longest utterance (fixed bucket shapes) is cut back here: the
    # adaptor sizes its attention mask by the longest length, not by the tensor.
    encoder_out = encoder_out[:, : int(encoder_lengths.max())]
    adaptor_trainable = track_grad and any(p.requires_grad for p in model.audio_adaptor.parameters())
    with torch.set_grad_enabled(adaptor_trainable or encoder_trainable):
        adaptor_out, _ = model.audio_adaptor(encoder_out, encoder_lengths)
    return adaptor_out


def embed_inputs(
    model: Any,
    input_ids: Any,
    speech: Any,
    speech_lengths: Any,
    audio_starts: Any,
    audio_token_counts: Any,
    *,
    track_grad: bool = False,
) -> Any:
    """LLM input embeddings `(batch, seq, hidden)`: token embeddings with audio written in.

    Row `i` gets adaptor outputs `0 .. audio_token_counts[i]-1` at positions
    `audio_starts[i] ..`; placeholder and padding ids must be valid (non-negative) ids.
    """
    import torch

    embedding = model.llm.get_input_embeddings()
    with torch.set_grad_enabled(track_grad and embedding.weight.requires_grad):
        embeds = embedding(input_ids)
    audio = encode_audio(model, speech, speech_lengths, track_grad=track_grad)
    counts = audio_token_counts.to(embeds.device)
    starts = audio_starts.to(embeds.device)
    longest = int(counts.max())
    offsets = torch.arange(longest, device=embeds.device)[None, :]
    take = offsets < counts[:, None]
    rows = torch.arange(embeds.shape[0], device=embeds.device)[:, None].expand_as(take)[take]
    positions = (starts[:, None] + offsets)[take]
    frames = offsets.expand_as(take)[take]
    embeds = embeds.clone()
    embeds[rows, positions] = audio[rows, frames].to(embeds.dtype)
    return embeds
