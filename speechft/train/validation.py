"""Validation: teacher-forced loss, and greedy transcripts scored as `speechft score` scores them.

The validation CER is the error rate a user gets from `speechft normalize` then `speechft score`
on the same references and hypotheses: both sides go through the guide's normalisation, then
CJK is scored per character and other scripts per word. So the checkpoint ranked best is best
by the number users report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speechft.data.collate import collate
from speechft.data.dataset import Sample
from speechft.model.build import ModelBundle
from speechft.model.inputs import IGNORE_INDEX
from speechft.train.config import TrainConfig


@dataclass
class Validation:
    loss: float
    cer: float
    examples: list[tuple[str, str, str]]  # key, reference, hypothesis


def validate(model: Any, bundle: ModelBundle, samples: Sequence[Sample], config: TrainConfig, device: Any, autocast_dtype: Any) -> Validation:
    """Teacher-forced loss and greedy-decoding CER on the fixed validation samples."""
    import torch

    from speechft.model.generate import greedy_decode
    from speechft.train.forward import batch_loss_sum

    model.eval()
    loss_sum = 0.0
    tokens = 0
    hypotheses: list[str] = []
    ordered = sorted(range(len(samples)), key=lambda i: int(samples[i].features.shape[0]))
    size = config.validation.batch_size
    for begin in range(0, len(ordered), size):
        chunk = [samples[i] for i in ordered[begin : begin + size]]
        batch = collate(chunk)
        with torch.no_grad():
            loss_sum += float(batch_loss_sum(model, batch, device, autocast_dtype, track_grad=False))
        tokens += batch.target_tokens
        bound = config.validation.max_new_tokens or 2 * max(sum(1 for x in s.labels if x != IGNORE_INDEX) for s in chunk) + 10
        hypotheses += greedy_decode(
            bundle, [], [s.prompt for s in chunk], system=[s.system for s in chunk], max_new_tokens=bound, features=[s.features for s in chunk]
        )
    references = [samples[i].text for i in ordered]
    keys = [samples[i].key for i in ordered]
    return Validation(loss_sum / max(tokens, 1), validation_cer(references, hypotheses), list(zip(keys, references, hypotheses)))


def validation_cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """The overall error rate `speechft normalize` then `speechft score` report for these transcripts."""
    from speechft.scoring.report import score_transcripts
    from speechft.text.normalize import normalize_text

    keys = [str(index) for index in range(len(references))]
    normalised = [dict(zip(keys, map(normalize_text, texts))) for texts in (references, hypotheses)]
    return score_transcripts(*normalised).overall.error_rate
