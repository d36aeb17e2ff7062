"""What a prep run did (:class:`PrepSummary`, also written as `summary.json`) and the too-many-rejects error."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from speechft.data.prep.checks import KeptUtterance
from speechft.data.prep.reasons import REJECT_REASONS, Rejection
from speechft.data.prep.split import Split
from speechft.errors import InputError
from speechft.profiles import profile_for_hours

WARNING_EXAMPLES = 5


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of the kept utterances."""

    p5: float
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles | None:
        if not values:
            return None
        ordered = sorted(values)

        def rank(percent: float) -> float:
            return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]

        return cls(rank(5), rank(50), rank(95), ordered[-1])

    def to_json(self) -> dict[str, float]:
        return {"p5": self.p5, "p50": self.p50, "p95": self.p95, "max": self.max}


@dataclass(frozen=True)
class PrepSummary:
    """What `prepare` did. `kept + rejected_total == total_keys`; `kept == train + validation`."""

    total_keys: int
    kept: int
    train: int
    validation: int
    rejected: dict[str, int]
    warnings: dict[str, int]
    warning_examples: dict[str, list[str]]
    hours: float
    train_hours: float
    duration_s: Percentiles | None
    text_tokens: Percentiles | None
    prompts_used: dict[str, int]
    recommended_profile: str
    profile_note: str
    outputs: dict[str, str]
    tokenizer: str
    jobs: int
    elapsed_s: float
    max_reject_fraction: float

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def reject_fraction(self) -> float:
        return self.rejected_total / self.total_keys if self.total_keys else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total_keys": self.total_keys,
            "kept": self.kept,
            "train": self.train,
            "validation": self.validation,
            "rejected_total": self.rejected_total,
            "rejected": self.rejected,
            "warnings": self.warnings,
            "warning_examples": self.warning_examples,
            "hours": round(self.hours, 4),
            "train_hours": round(self.train_hours, 4),
            "duration_s": None if self.duration_s is None else self.duration_s.to_json(),
            "text_tokens": None if self.text_tokens is None else self.text_tokens.to_json(),
            "prompts_used": self.prompts_used,
            "recommended_profile": self.recommended_profile,
            "profile_note": self.profile_note,
            "outputs": self.outputs,
            "tokenizer": self.tokenizer,
            "jobs": self.jobs,
            "elapsed_s": round(self.elapsed_s, 3),
            "max_reject_fraction": self.max_reject_fraction,
        }


@dataclass(frozen=True)
class RunFacts:
    """How the run went, beside what it produced: for the summary's last lines."""

    outputs: dict[str, str]
    tokenizer: str
    jobs: int
    elapsed_s: float
    max_reject_fraction: float


def summarize(
    total_keys: int,
    kept: Sequence[KeptUtterance],
    sides: Split,
    rejections: Sequence[Rejection],
    warned: dict[str, list[str]],
    prompts_used: dict[str, int],
    run: RunFacts,
) -> PrepSummary:
    """Counts, hours, spreads and the profile the guide's rule recommends for the training hours.

    `kept` is every kept utterance in input order, `sides` the same utterances split.
    """
    durations = [utterance.info.duration_s for utterance in kept]
    train_seconds = _added(utterance.info.duration_s for utterance in sides.train)
    reason_counts = Counter(rejection.reason for rejection in rejections)
    profile, note = profile_for_hours(train_seconds / 3600)
    return PrepSummary(
        total_keys=total_keys,
        kept=len(kept),
        train=len(sides.train),
        validation=len(sides.validation),
        rejected={reason: reason_counts[reason] for reason in REJECT_REASONS if reason_counts[reason]},
        warnings={name: len(keys) for name, keys in warned.items() if keys},
        warning_examples={name: keys[:WARNING_EXAMPLES] for name, keys in warned.items() if keys},
        hours=_added(durations) / 3600,
        train_hours=train_seconds / 3600,
        duration_s=Percentiles.of(durations),
        text_tokens=Percentiles.of([utterance.text_length for utterance in kept]),
        prompts_used=prompts_used,
        recommended_profile=profile,
        profile_note=note,
        outputs=run.outputs,
        tokenizer=run.tokenizer,
        jobs=run.jobs,
        elapsed_s=run.elapsed_s,
        max_reject_fraction=run.max_reject_fraction,
    )


def _added(values: Iterable[float]) -> float:
    # Left to right, one addition at a time: `sum()` compensates rounding from Python 3.12 on,
    # so the hours written would differ in the last digits between Python versions.
    total = 0.0
    for value in values:
        total += value
    return total


class TooManyRejectsError(InputError):
    """More of the corpus was rejected than `max_reject_fraction` allows; all outputs were written."""

    def __init__(self, summary: PrepSummary) -> None:
        super().__init__(
            f"{summary.rejected_total} of {summary.total_keys} utterances rejected "
            f"({summary.reject_fraction:.1%} > --max-reject-fraction {summary.max_reject_fraction:g}); "
            f"see {summary.outputs['rejects']} for why, fix the corpus or raise --max-reject-fraction"
        )
        self.summary = summary
