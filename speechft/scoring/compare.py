"""Comparing systems scored on the same reference: change in error rate and its uncertainty.

The confidence interval is a paired bootstrap over utterances: each resample draws as many
utterance indices as there are reference utterances, with replacement, the same indices for both
systems; a system's error rate on a resample is sum(errors) / sum(N) over the drawn utterances;
the interval is the central `confidence` share of the resampled differences (candidate minus
baseline). The random generator is numpy's PCG64 seeded with `seed`, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

from speechft.errors import UsageError
from speechft.scoring.report import SystemScore

# Resampled indices are drawn in blocks of about this many, to bound memory on large test sets.
_INDICES_PER_BLOCK = 4_000_000


@dataclass(frozen=True)
class Comparison:
    """A candidate system against a baseline; rates and changes are fractions (0.05 = 5 %)."""

    baseline: str
    candidate: str
    baseline_rate: float
    candidate_rate: float
    absolute_change: float
    """candidate_rate - baseline_rate (negative: the candidate makes fewer errors)."""
    relative_change: float | None
    """absolute_change / baseline_rate; None when the baseline makes no errors."""
    interval_low: float
    interval_high: float
    """Bootstrap confidence interval of absolute_change."""
    confidence: float
    resamples: int
    seed: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.interval_low > 0 or self.interval_high < 0


def compare(
    baseline: SystemScore,
    candidate: SystemScore,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Change from `baseline` to `candidate` with a paired bootstrap interval (module docstring)."""
    import numpy

    if resamples < 1:
        raise UsageError(f"--bootstrap must be at least 1 (got {resamples})")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be between 0 and 1 (got {confidence})")
    baseline_keys = [utterance.key for utterance in baseline.utterances]
    if baseline_keys != [utterance.key for utterance in candidate.utterances]:
        raise UsageError(f"{baseline.name} and {candidate.name} were not scored against the same reference")

    lengths = numpy.array([utterance.counts.reference_length for utterance in baseline.utterances], dtype=numpy.int64)
    differences = numpy.array(
        [after.counts.errors - before.counts.errors for before, after in zip(baseline.utterances, candidate.utterances)],
        dtype=numpy.int64,
    )
    utterance_count = len(lengths)
    generator = numpy.random.default_rng(seed)
    block = max(1, _INDICES_PER_BLOCK // max(utterance_count, 1))
    samples: list[numpy.ndarray] = []
    for start in range(0, resamples, block):
        indices = generator.integers(0, utterance_count, size=(min(block, resamples - start), utterance_count))
        # A resample with no reference tokens (only empty references drawn) divides by 1.
        samples.append(differences[indices].sum(axis=1) / numpy.maximum(lengths[indices].sum(axis=1), 1))
    resampled = numpy.concatenate(samples)
    tail = (1 - confidence) / 2 * 100
    low, high = numpy.percentile(resampled, [tail, 100 - tail])

    baseline_rate = baseline.overall.error_rate
    candidate_rate = candidate.overall.error_rate
    change = candidate_rate - baseline_rate
    return Comparison(
        baseline=baseline.name,
        candidate=candidate.name,
        baseline_rate=baseline_rate,
        candidate_rate=candidate_rate,
        absolute_change=change,
        relative_change=change / baseline_rate if baseline_rate else None,
        interval_low=float(low),
        interval_high=float(high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def comparison_json(comparison: Comparison) -> dict[str, object]:
    """A comparison as plain JSON data (fractions, not percentages)."""
    return {
        "baseline": comparison.baseline,
        "candidate": comparison.candidate,
        "baseline_error_rate": comparison.baseline_rate,
        "candidate_error_rate": comparison.candidate_rate,
        "absolute_change": comparison.absolute_change,
        "relative_change": comparison.relative_change,
        "confidence": comparison.confidence,
        "interval": [comparison.interval_low, comparison.interval_high],
        "significant": comparison.significant,
        "bootstrap_resamples": comparison.resamples,
        "seed": comparison.seed,
    }
