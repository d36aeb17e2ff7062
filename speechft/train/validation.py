"""Validation: teacher-forced loss, and greedy transcripts scored as `speechft score` scores them.

The validation CER is the error rate a user gets from `speechft normalize` then `speechft score`
on the same references and hypotheses: both sides go through the guide's normalisation, then
CJK is scored per character and other scripts per word. So the checkpoint ranked best is best
by the number users report.

Ranks share the work. The fixed samples are cut into the same length-sorted batches whatever the
number of ranks, and each rank decodes a disjoint, length-balanced set of whole batches; the loss
sums, token counts and edit counts (not rates) are summed in one all-reduce. So every utterance
is decoded exactly as one rank would decode it and the CER equals a one-rank run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speechft.data.collate import collate
from speechft.data.dataset import Sample
from speechft.model.build import ModelBundle
from speechft.model.inputs import IGNORE_INDEX
from speechft.scoring.align import Counts
from speechft.train import distributed as dist_tools
from speechft.train.config import TrainConfig


@dataclass
class Validation:
    loss: float
    cer: float
    examples: list[tuple[str, str, str]]  # key, reference, hypothesis: every rank's on rank 0, in one-rank order; this rank's elsewhere


def validation_batches(samples: Sequence[Sample], batch_size: int) -> list[list[int]]:
    """Indices into `samples`, shortest first, `batch_size` at a time: the same batches on every rank and for any number of ranks."""
    ordered = sorted(range(len(samples)), key=lambda i: int(samples[i].features.shape[0]))
    return [ordered[begin : begin + batch_size] for begin in range(0, len(ordered), batch_size)]


def shard_batches(costs: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Positions of the batches `rank` decodes, ascending: costliest batch first to the least loaded
    rank (ties to the lower rank). Every rank computes the same split; a rank may get none."""
    loads = [0] * world_size
    owner = [0] * len(costs)
    for position in sorted(range(len(costs)), key=lambda p: (-costs[p], p)):
        least = min(range(world_size), key=lambda r: (loads[r], r))
        owner[position] = least
        loads[least] += costs[position]
    return [position for position in range(len(costs)) if owner[position] == rank]


def validate(
    model: Any,
    bundle: ModelBundle,
    samples: Sequence[Sample],
    config: TrainConfig,
    device: Any,
    autocast_dtype: Any,
    world: dist_tools.World | None = None,
) -> Validation:
    """Teacher-forced loss and greedy-decoding CER on the fixed validation samples, this rank's share of them.

    Every rank of `world` must call this (a rank with no batch still joins the sums). Under FSDP2
    the caller gathers the weights first (:func:`speechft.train.distributed.full_parameters`)."""
    world = world or dist_tools.World(rank=0, local_rank=0, world_size=1, device=device)
    model.eval()
    batches = validation_batches(samples, config.validation.batch_size)
    # Padded feature frames: what the encoder and the prefill cost, and a proxy for the decoding length.
    costs = [len(batch) * max(int(samples[i].features.shape[0]) for i in batch) for batch in batches]
    loss_sum, tokens, decoded = 0.0, 0, []
    for position in shard_batches(costs, world.rank, world.world_size):
        chunk = [samples[i] for i in batches[position]]
        batch_loss, batch_tokens, hypotheses = _validate_batch(model, bundle, chunk, config, device, autocast_dtype)
        loss_sum += batch_loss
        tokens += batch_tokens
        decoded += [(position, s.key, s.text, hypothesis) for s, hypothesis in zip(chunk, hypotheses)]
    counts = error_counts([text for _, _, text, _ in decoded], [hypothesis for *_, hypothesis in decoded])
    # One all-reduce, which also keeps the ranks in step: none goes on before every rank is done.
    totals = dist_tools.sum_across(world, [loss_sum, tokens, counts.correct, counts.substitutions, counts.deletions, counts.insertions])
    overall = Counts(*(int(total) for total in totals[2:]))
    if world.distributed:
        gathered = dist_tools.gather_to_main(world, decoded)
        decoded = sorted((item for part in gathered for item in part), key=lambda item: item[0]) if world.is_main else decoded
    return Validation(totals[0] / max(totals[1], 1), overall.error_rate, [(key, text, hypothesis) for _, key, text, hypothesis in decoded])


def _validate_batch(
    model: Any, bundle: ModelBundle, chunk: Sequence[Sample], config: TrainConfig, device: Any, autocast_dtype: Any
) -> tuple[float, int, list[str]]:
    """(summed loss, target tokens, greedy transcripts) of one batch."""
    import torch

    from speechft.model.generate import greedy_decode
    from speechft.train.forward import batch_loss_sum

    batch = collate(list(chunk))
    with torch.no_grad():
        loss = float(batch_loss_sum(model, batch, device, autocast_dtype, track_grad=False))
    bound = config.validation.max_new_tokens or 2 * max(sum(1 for x in s.labels if x != IGNORE_INDEX) for s in chunk) + 10
    hypotheses = greedy_decode(
        bundle, [], [s.prompt for s in chunk], system=[s.system for s in chunk], max_new_tokens=bound, features=[s.features for s in chunk]
    )
    return loss, batch.target_tokens, hypotheses


def error_counts(references: Sequence[str], hypotheses: Sequence[str]) -> Counts:
    """Summed edit counts of `speechft normalize` then `speechft score` for these transcripts (they add up across ranks)."""
    from speechft.scoring.report import score_transcripts
    from speechft.text.normalize import normalize_text

    keys = [str(index) for index in range(len(references))]
    normalised = [dict(zip(keys, map(normalize_text, texts))) for texts in (references, hypotheses)]
    return score_transcripts(*normalised).overall


def validation_cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """The overall error rate `speechft normalize` then `speechft score` report for these transcripts."""
    return error_counts(references, hypotheses).error_rate
