"""`prepare`: Kaldi `wav.scp` + `text` (+ `segments`) -> Fun-ASR ChatML jsonl, nothing silently dropped.

The run is a chain of stages, each returning values (see :mod:`speechft.data.prep`):
candidates -> probe -> checks -> cut -> split -> write. Every key of the inputs ends up in exactly
one place: a line of the jsonl (or of the validation jsonl), or a line `key<TAB>reason<TAB>detail`
of the rejects file; the summary's counts add up: `kept + sum(rejected) == total_keys`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from speechft.data.audio import AudioInfo
from speechft.data.prep import write
from speechft.data.prep.candidates import Candidate, read_candidates
from speechft.data.prep.checks import audio_warnings, check_all
from speechft.data.prep.options import PrepOptions, ProgressCallback
from speechft.data.prep.probe import HeaderReads, per_utterance, wants_pool, worker_pool
from speechft.data.prep.reasons import REPEATED_LINE, WARNINGS, Rejection
from speechft.data.prep.segments import cut_segments
from speechft.data.prep.split import split
from speechft.data.prep.summary import PrepSummary, RunFacts, TooManyRejectsError, summarize
from speechft.data.tokens import TokenCounter, load_token_counter
from speechft.errors import InputError

Kept = TypeVar("Kept")


def prepare(options: PrepOptions, progress: ProgressCallback | None = None) -> PrepSummary:
    """Validate a Kaldi-style corpus and write the training jsonl, rejects, summary and prompt sidecar.

    Raises TooManyRejectsError (after writing everything) when the rejected fraction exceeds
    `options.max_reject_fraction`, InputError/UsageError for unusable inputs or options.
    """
    options.validate()
    report = progress or _no_progress
    started = time.perf_counter()
    jobs = options.jobs or os.cpu_count() or 1

    joined = read_candidates(options)
    if not joined.outcomes:
        raise InputError(f"{options.scp} and {options.text} hold no utterances")
    candidates, rejected = partition(joined.outcomes)
    with _workers(options, candidates, jobs) as pool:
        counter = load_token_counter(options.tokenizer_dir)
        probed, text_lengths = _probe_and_count(options, candidates, counter, pool, jobs, report)
        kept, rejected_audio = partition(check_all(candidates, probed, text_lengths, options))
        rejected_cut: list[Rejection] = []
        if options.audio_out is not None:
            kept, rejected_cut = partition(cut_segments(kept, options.audio_out, pool, options.url_timeout_s, options.url_retries, report))
    sides = split(kept, options.val_fraction, options.val_seed)

    report("write", 0, 1)
    order = [outcome.key for outcome in joined.outcomes]
    rejections = _in_order(order, [*rejected, *rejected_audio, *rejected_cut], kept_count=len(kept))
    prompts_used = write.write_manifests(options, sides)
    write.write_rejects(options.rejects_path, rejections)
    write.write_sidecar(options.out, options.policy, prompts_used)
    warned = {**audio_warnings(candidates, probed), REPEATED_LINE: joined.repeated}
    facts = RunFacts(
        write.output_paths(options),
        f"{options.tokenizer_dir} ({counter.source})",
        jobs,
        time.perf_counter() - started,
        options.max_reject_fraction,
    )
    summary = summarize(len(order), kept, sides, rejections, {name: warned[name] for name in WARNINGS}, prompts_used, facts)
    write.write_summary(options.summary_path, summary)
    report("write", 1, 1)
    if summary.reject_fraction > options.max_reject_fraction:
        raise TooManyRejectsError(summary)
    return summary


def partition(outcomes: Sequence[Kept | Rejection]) -> tuple[list[Kept], list[Rejection]]:
    """A stage's outcomes split into what goes on to the next stage and what was rejected."""
    kept: list[Kept] = []
    rejected: list[Rejection] = []
    for outcome in outcomes:
        (rejected if isinstance(outcome, Rejection) else kept).append(outcome)  # type: ignore[arg-type]
    return kept, rejected


@contextlib.contextmanager
def _workers(options: PrepOptions, candidates: Sequence[Candidate], jobs: int) -> Iterator[Any]:
    """The worker pool for header reads and segment cutting, or None when reading here is faster.

    The workers are forked before the tokenizer first runs: forking after its thread pool has
    started is unsafe (and makes the tokenizers library print a warning).
    """
    locations = list(dict.fromkeys(candidate.location for candidate in candidates))
    cutting = options.segments is not None
    if not (wants_pool(locations, jobs) or (cutting and jobs > 1 and len(locations) > 1)):
        yield None
        return
    with worker_pool(jobs, fresh=cutting) as pool:
        yield pool


def _probe_and_count(
    options: PrepOptions, candidates: Sequence[Candidate], counter: TokenCounter, pool: Any, jobs: int, report: ProgressCallback
) -> tuple[list[AudioInfo | Rejection], list[int]]:
    """Stage 2 with tokenisation: the header reads run in the background while transcripts are counted."""
    locations = list(dict.fromkeys(candidate.location for candidate in candidates))
    headers = HeaderReads(locations, pool, jobs, options.url_timeout_s, options.url_retries, report)
    try:
        transcripts = [candidate.transcript for candidate in candidates]
        report("tokens", 0, len(transcripts))
        text_lengths = counter.count(transcripts)
        report("tokens", len(transcripts), len(transcripts))
        probed = dict(zip(locations, headers.results()))
    finally:
        headers.close()
    return per_utterance(candidates, probed), text_lengths


def _in_order(order: Sequence[str], rejections: Sequence[Rejection], *, kept_count: int) -> list[Rejection]:
    """The rejections in report order, after checking that every key has exactly one outcome."""
    by_key = {rejection.key: rejection for rejection in rejections}
    if len(by_key) != len(rejections) or kept_count + len(by_key) != len(order):
        raise RuntimeError("prep lost track of a key; this is a bug in speechft")  # the identity the summary promises
    return [by_key[key] for key in order if key in by_key]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None
