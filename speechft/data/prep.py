"""`prepare`: Kaldi `wav.scp` + `text` (+ `segments`) -> Fun-ASR ChatML jsonl, nothing silently dropped.

Every key of the inputs ends up in exactly one place: a line of the jsonl (or of the validation
jsonl), or a line `key<TAB>reason<TAB>detail` of the rejects file. The summary's counts add up:
`kept + sum(rejected) == total_keys`.

Files written (all atomically: temp file + rename), for `--out data/train.jsonl`:
- `data/train.jsonl`: one line per kept utterance, in `wav.scp` order (`segments` order with
  segments), `{"key", "messages", "speech_length", "text_length"}`.
- the validation jsonl when a validation fraction is asked for;
- `data/train.rejects.tsv` (unless another path is given);
- `data/train.summary.json`: counts, hours, percentiles, prompts, recommended profile;
- `data/train.prompt.json`: the prompt policy sidecar (see :mod:`speechft.data.prompts`).
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import math
import multiprocessing
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechft.data import audio, remote
from speechft.data.audio import MODEL_SAMPLE_RATE, AudioError, AudioInfo
from speechft.data.kaldi import BadLine, KeyedFile, Segment, parse_segment, read_keyed_file
from speechft.data.prompts import PromptPolicy, PromptSidecar, sidecar_path_for
from speechft.data.tokens import load_token_counter
from speechft.errors import InputError, UsageError
from speechft.profiles import profile_for_hours

SYSTEM_PROMPT = "You are a helpful assistant."

# Reject reasons, in the order the summary lists them.
BAD_LINE = "bad_line"
DUPLICATE_KEY = "duplicate_key"
NO_TRANSCRIPT = "no_transcript"
NO_AUDIO = "no_audio"
NO_SEGMENTS = "no_segments"
EMPTY_TRANSCRIPT = "empty_transcript"
UNSUPPORTED_ENTRY = "unsupported_entry"
FILE_MISSING = audio.FILE_MISSING
UNREADABLE_AUDIO = audio.UNREADABLE_AUDIO
URL_UNREACHABLE = audio.URL_UNREACHABLE
ZERO_LENGTH = "zero_length"
BAD_SEGMENT = "bad_segment"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
TOO_MANY_TOKENS = "too_many_tokens"
REJECT_REASONS: dict[str, str] = {
    BAD_LINE: "line unreadable (invalid UTF-8, no separator, missing fields)",
    DUPLICATE_KEY: "key given twice with different content",
    NO_TRANSCRIPT: "audio without a line in text",
    NO_AUDIO: "transcript without audio (not in wav.scp / segments)",
    NO_SEGMENTS: "recording no segment uses",
    EMPTY_TRANSCRIPT: "transcript is empty",
    UNSUPPORTED_ENTRY: "wav.scp entry is a command pipe",
    FILE_MISSING: "audio file does not exist",
    UNREADABLE_AUDIO: "audio unreadable or corrupt",
    URL_UNREACHABLE: "audio URL could not be downloaded",
    ZERO_LENGTH: "audio has no samples",
    BAD_SEGMENT: "segment outside its recording",
    TOO_SHORT: "fewer fbank frames than the minimum",
    TOO_LONG: "more fbank frames than the maximum",
    TOO_MANY_TOKENS: "transcript longer than the token maximum",
}

# Warnings: the utterance is kept, the summary lists it.
RESAMPLED = "resampled"
DOWNMIXED = "downmixed"
REPEATED_LINE = "repeated_line"
WARNINGS: dict[str, str] = {
    RESAMPLED: "sample rate is not 16 kHz (resampled when loaded)",
    DOWNMIXED: "more than one channel (averaged to mono when loaded)",
    REPEATED_LINE: "identical line given twice (used once)",
}
WARNING_EXAMPLES = 5

# Kaldi's extract-segments truncates a segment that overshoots its recording by less than this.
SEGMENT_MAX_OVERSHOOT_S = 0.5
# The guide's rule: < 1000 h adaptor only, < 5000 h encoder + adaptor, > 10000 h everything.

ProgressCallback = Callable[[str, int, int], None]
"""`progress(stage, done, total)`: stages are `audio`, `tokens`, `segments`, `write`."""


@dataclass(frozen=True)
class PrepOptions:
    """Everything `prepare` needs; paths are used as given (relative to the working directory)."""

    scp: Path
    text: Path
    out: Path
    tokenizer_dir: Path
    policy: PromptPolicy = PromptPolicy()
    segments: Path | None = None
    audio_out: Path | None = None
    val_fraction: float = 0.0
    val_out: Path | None = None
    val_seed: int = 0
    rejects: Path | None = None
    jobs: int = 0  # 0: every core
    min_frames: int = 10
    max_frames: int = 12000
    max_tokens: int = 2048
    max_reject_fraction: float = 0.05
    url_timeout_s: float = remote.DEFAULT_URL_TIMEOUT_S
    url_retries: int = remote.DEFAULT_URL_RETRIES

    def validate(self) -> None:
        if str(self.out) == "-" or self.out.name in ("", ".") or self.out.is_dir():
            raise UsageError(f"--out must be a file path (got {self.out}); prep writes files beside it")
        if (self.segments is None) != (self.audio_out is None):
            raise UsageError("--segments and --audio-out go together: segments are cut into files under --audio-out")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise UsageError(f"--max-reject-fraction must be in [0, 1], got {self.max_reject_fraction}")
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise UsageError(f"need 1 <= --min-frames <= --max-frames, got {self.min_frames} and {self.max_frames}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.jobs < 0:
            raise UsageError(f"--jobs must be positive (0 = every core), got {self.jobs}")

    @property
    def stem(self) -> Path:
        name = self.out.name[: -len(".jsonl")] if self.out.name.endswith(".jsonl") else self.out.name
        return self.out.with_name(name)

    @property
    def rejects_path(self) -> Path:
        return self.rejects if self.rejects is not None else self.stem.with_name(self.stem.name + ".rejects.tsv")

    @property
    def summary_path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".summary.json")

    @property
    def val_path(self) -> Path | None:
        if self.val_fraction <= 0:
            return None
        return self.val_out if self.val_out is not None else self.stem.with_name(self.stem.name + ".val.jsonl")


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
        def percentiles(value: Percentiles | None) -> dict[str, float] | None:
            return None if value is None else {"p5": value.p5, "p50": value.p50, "p95": value.p95, "max": value.max}

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
            "duration_s": percentiles(self.duration_s),
            "text_tokens": percentiles(self.text_tokens),
            "prompts_used": self.prompts_used,
            "recommended_profile": self.recommended_profile,
            "profile_note": self.profile_note,
            "outputs": self.outputs,
            "tokenizer": self.tokenizer,
            "jobs": self.jobs,
            "elapsed_s": round(self.elapsed_s, 3),
            "max_reject_fraction": self.max_reject_fraction,
        }


class TooManyRejectsError(InputError):
    """More of the corpus was rejected than `max_reject_fraction` allows; all outputs were written."""

    def __init__(self, summary: PrepSummary) -> None:
        super().__init__(
            f"{summary.rejected_total} of {summary.total_keys} utterances rejected "
            f"({summary.reject_fraction:.1%} > --max-reject-fraction {summary.max_reject_fraction:g}); "
            f"see {summary.outputs['rejects']} for why, fix the corpus or raise --max-reject-fraction"
        )
        self.summary = summary


@dataclass(frozen=True)
class Rejection:
    key: str
    reason: str
    detail: str


@dataclass
class _Candidate:
    """An utterance that passed the line checks; audio facts and token count come later."""

    key: str
    transcript: str
    location: str  # absolute path or URL (the recording's, with segments)
    segment: Segment | None = None
    info: AudioInfo | None = None
    text_length: int = 0
    prompt: str = ""
    line_parts: tuple[str, str] | None = None  # the jsonl line around its speech_length


def is_validation(key: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic split by a hash of the key: the same key lands on the same side on any machine."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def chatml_line(key: str, prompt: str, location: str, transcript: str, speech_length: int, text_length: int) -> str:
    """One jsonl line: the upstream schema plus `key`; the `!` before the path is mandatory upstream.

    Byte for byte what `json.dumps(record, ensure_ascii=False)` gives for the record
    `{"key", "messages": [system, user, assistant], "speech_length", "text_length"}`.
    """
    head, tail = _line_parts(key, prompt, location, transcript, text_length)
    return f"{head}{speech_length}{tail}"


def _line_parts(key: str, prompt: str, location: str, transcript: str, text_length: int) -> tuple[str, str]:
    # Built from pieces: the fixed structure once, only the strings encoded per line, which is
    # several times faster than encoding the whole record at tens of thousands of lines.
    user = f"{prompt}<|startofspeech|>!{location}<|endofspeech|>"
    head = (
        f'{{"key": {_encode_string(key)}, "messages": [{{"role": "system", "content": {_SYSTEM_JSON}}}, '
        f'{{"role": "user", "content": {_encode_string(user)}}}, '
        f'{{"role": "assistant", "content": {_encode_string(transcript)}}}], "speech_length": '
    )
    return head, f', "text_length": {text_length}}}'


_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_SYSTEM_JSON = json.dumps(SYSTEM_PROMPT)


def _where(keyed: KeyedFile, lines: Sequence[int]) -> str:
    return f"{keyed.name} lines {', '.join(str(line) for line in lines)}"


def _absolute(location: str) -> str:
    """URLs and absolute paths as written (as upstream does); relative paths against the working directory."""
    return location if location.startswith("/") or audio.is_url(location) else os.path.abspath(location)


def _line_checks(
    key: str, transcript_file: KeyedFile, audio_files: Sequence[KeyedFile], location: str | None
) -> Rejection | None:
    """The reasons a key can be rejected from the input lines alone; None when it passes."""
    for keyed in (*audio_files, transcript_file):
        if key in keyed.bad:
            return Rejection(key, BAD_LINE, keyed.bad[key].detail)
    for keyed in (*audio_files, transcript_file):
        if key in keyed.conflicts:
            return Rejection(key, DUPLICATE_KEY, f"different entries in {_where(keyed, keyed.conflicts[key])}")
    if key not in transcript_file.entries:
        return Rejection(key, NO_TRANSCRIPT, f"not in {transcript_file.name}")
    if location is None:
        return Rejection(key, NO_AUDIO, f"not in {audio_files[-1].name}")
    if not transcript_file.entries[key].value:
        return Rejection(key, EMPTY_TRANSCRIPT, f"{transcript_file.name}:{transcript_file.entries[key].lineno}: empty transcript")
    if location.rstrip().endswith("|"):
        return Rejection(key, UNSUPPORTED_ENTRY, f"{location!r}: command pipes are not supported; write the audio to files first")
    return None


# --- parallel header reads -------------------------------------------------------------------

_ProbeResult = tuple[int, int, int] | tuple[str, str]


def _probe_local(locations: Sequence[str]) -> list[_ProbeResult]:
    """Worker: header facts or (reason, detail) for each local path."""
    results: list[_ProbeResult] = []
    for location in locations:
        try:
            info = audio.read_file_info(location)
        except AudioError as error:
            results.append((error.reason, error.detail))
        else:
            results.append((info.frames, info.sample_rate, info.channels))
    return results


def _pool(jobs: int, *, fresh: bool = False) -> Any:
    """Worker processes: forked (start in milliseconds) for header reads, which use no threads.

    `fresh`: workers that decode and resample audio start from a clean interpreter (forkserver),
    because torch's thread pools deadlock in a child forked from a parent that already used them.
    """
    methods = multiprocessing.get_all_start_methods()
    preferred = "forkserver" if fresh else "fork"
    context = multiprocessing.get_context(preferred if preferred in methods else None)
    return context.Pool(jobs)


def _chunk_size(count: int, jobs: int) -> int:
    # Chunks big enough that dispatch costs little, small enough that progress moves and the
    # workers finish together.
    return max(64, min(2000, count // (jobs * 8) + 1))


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class _HeaderReader:
    """Reads headers in the background (worker processes for files, threads for URLs).

    Started before tokenisation so both run at once; `results()` waits and returns them in the
    order of `locations`.
    """

    def __init__(
        self, locations: Sequence[str], options: PrepOptions, jobs: int, pool: Any, progress: ProgressCallback
    ) -> None:
        self.locations = locations
        self.progress = progress
        self.local = [index for index, location in enumerate(locations) if not audio.is_url(location)]
        self.remote = [index for index, location in enumerate(locations) if audio.is_url(location)]
        local_paths = [locations[index] for index in self.local]
        self.pending_local: Iterator[list[_ProbeResult]] | None = None
        self.chunk_size = _chunk_size(len(local_paths), jobs)
        if pool is not None and len(local_paths) >= 4 * self.chunk_size:
            self.pending_local = pool.imap(_probe_local, _chunks(local_paths, self.chunk_size))
        self.threads = None
        self.pending_remote = []
        if self.remote:
            self.threads = ThreadPoolExecutor(max_workers=min(32, max(4, 4 * jobs)))
            self.pending_remote = [
                self.threads.submit(self._probe_url, locations[index], options.url_timeout_s, options.url_retries)
                for index in self.remote
            ]

    @staticmethod
    def _probe_url(location: str, timeout_s: float, retries: int) -> _ProbeResult:
        try:
            info = audio.read_info(location, timeout_s=timeout_s, retries=retries)
        except AudioError as error:
            return (error.reason, error.detail)
        return (info.frames, info.sample_rate, info.channels)

    def results(self) -> list[_ProbeResult]:
        total = len(self.locations)
        out: list[_ProbeResult | None] = [None] * total
        done = 0
        try:
            local_paths = [self.locations[index] for index in self.local]
            if self.pending_local is not None:
                chunks: Iterable[list[_ProbeResult]] = self.pending_local
            else:
                chunks = (_probe_local(chunk) for chunk in _chunks(local_paths, self.chunk_size))
            position = 0
            for chunk_results in chunks:
                for result in chunk_results:
                    out[self.local[position]] = result
                    position += 1
                done += len(chunk_results)
                self.progress("audio", done, total)
            for index, future in zip(self.remote, self.pending_remote):
                out[index] = future.result()
                done += 1
                self.progress("audio", done, total)
        finally:
            self.close()
        missing = [self.locations[index] for index, result in enumerate(out) if result is None]
        if missing:
            raise RuntimeError(f"no header result for {missing[0]}; this is a bug in speechft")
        return out  # type: ignore[return-value]

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=True, cancel_futures=True)
            self.threads = None


# --- segments ---------------------------------------------------------------------------------


def segment_file_name(key: str) -> str:
    """A file name for a segment key that is unique and safe (keys may hold `/`)."""
    return urllib.parse.quote(key, safe="") + ".wav"


def _cut_recording(job: tuple[str, list[tuple[str, int, int, str]], float, int]) -> list[tuple[str, str, str] | tuple[str, int]]:
    """Worker: cut one recording's segments into 16 kHz mono PCM-16 files.

    `job = (location, [(key, start_frame, end_frame, target)], timeout_s, retries)`, frames at
    16 kHz. A target that already holds exactly that audio length is left as it is (re-runs are
    cheap). Returns `(key, frames)` or `(key, reason, detail)` per segment.
    """
    import soundfile

    location, segments, timeout_s, retries = job
    pending = []
    results: list[tuple[str, str, str] | tuple[str, int]] = []
    for key, start, end, target in segments:
        try:
            existing = audio.read_file_info(target)
        except AudioError:
            pending.append((key, start, end, target))
            continue
        if existing.frames == end - start and existing.sample_rate == MODEL_SAMPLE_RATE and existing.channels == 1:
            results.append((key, end - start))
        else:
            pending.append((key, start, end, target))
    if not pending:
        return results
    try:
        samples = audio.load_audio(location, timeout_s=timeout_s, retries=retries)
    except AudioError as error:
        return results + [(key, error.reason, error.detail) for key, _, _, _ in pending]
    for key, start, end, target in pending:
        piece = samples[start : min(end, len(samples))]
        temporary = f"{target}.tmp-{os.getpid()}"
        try:
            soundfile.write(temporary, piece, MODEL_SAMPLE_RATE, subtype="PCM_16", format="WAV")
            os.replace(temporary, target)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise InputError(f"{target}: cannot write segment audio ({error})") from None
        results.append((key, len(piece)))
    return results


# --- output -----------------------------------------------------------------------------------


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    """Write lines to a temp file beside `path`, then rename: readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line)
                handle.write("\n")
        os.replace(temporary, path)
    except OSError as error:
        raise InputError(f"{path}: cannot write ({error.strerror or error})") from None


def _tsv_field(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines())


# --- the pipeline -----------------------------------------------------------------------------


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def prepare(options: PrepOptions, progress: ProgressCallback | None = None) -> PrepSummary:
    """Validate a Kaldi-style corpus and write the training jsonl, rejects, summary and prompt sidecar.

    Raises TooManyRejectsError (after writing everything) when the rejected fraction exceeds
    `options.max_reject_fraction`, InputError/UsageError for unusable inputs or options.
    """
    options.validate()
    report = progress or _no_progress
    started = time.perf_counter()
    jobs = options.jobs or os.cpu_count() or 1

    scp = read_keyed_file(options.scp, value_required=True, what="audio path")
    text = read_keyed_file(options.text, value_required=False, what="transcript")
    rejections: dict[str, Rejection] = {}
    candidates: list[_Candidate] = []
    warned: dict[str, list[str]] = {name: [] for name in WARNINGS}
    for keyed in (scp, text):
        for key in keyed.repeats:
            warned[REPEATED_LINE].append(key)

    if options.segments is None:
        order = list(dict.fromkeys([*scp.keys_in_order(), *text.keys_in_order()]))
        for key in order:
            entry = scp.entries.get(key)
            location = entry.value if entry is not None else None
            rejection = _line_checks(key, text, (scp,), location)
            if rejection is not None:
                rejections[key] = rejection
            else:
                assert location is not None  # _line_checks rejects a key without audio
                candidates.append(_Candidate(key, text.entries[key].value, _absolute(location)))
    else:
        order = _segment_candidates(options, scp, text, rejections, candidates, warned)

    if not order:
        raise InputError(f"{options.scp} and {options.text} hold no utterances")

    # Header reads (background) and tokenisation (here) at once.
    locations = list(dict.fromkeys(candidate.location for candidate in candidates))
    local_count = sum(1 for location in locations if not audio.is_url(location))
    wants_pool = jobs > 1 and (
        local_count >= 4 * _chunk_size(local_count, jobs) or (options.segments is not None and len(locations) > 1)
    )
    # Workers are forked before the tokenizer first runs: forking after its thread pool has
    # started is unsafe (and makes the tokenizers library print a warning).
    pool = _pool(jobs, fresh=options.segments is not None) if wants_pool else None
    try:
        return _prepare_with(options, report, started, jobs, order, rejections, candidates, warned, locations, pool)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _prepare_with(
    options: PrepOptions,
    report: ProgressCallback,
    started: float,
    jobs: int,
    order: list[str],
    rejections: dict[str, Rejection],
    candidates: list[_Candidate],
    warned: dict[str, list[str]],
    locations: list[str],
    pool: Any,
) -> PrepSummary:
    counter = load_token_counter(options.tokenizer_dir)
    headers = _HeaderReader(locations, options, jobs, pool, report)
    try:
        transcripts = [candidate.transcript for candidate in candidates]
        report("tokens", 0, len(transcripts))
        counts = counter.count(transcripts)
        report("tokens", len(transcripts), len(transcripts))
        # While the header reads finish: everything of each line but its speech_length.
        for candidate, count in zip(candidates, counts):
            candidate.text_length = count
            candidate.prompt = options.policy.prompt_for(candidate.transcript)
            if candidate.segment is None:
                candidate.line_parts = _line_parts(
                    candidate.key, candidate.prompt, candidate.location, candidate.transcript, count
                )
        probed = dict(zip(locations, headers.results()))
    finally:
        headers.close()

    survivors: list[_Candidate] = []
    for candidate in candidates:
        result = probed[candidate.location]
        rejection = _audio_checks(candidate, result, options, warned)
        if rejection is not None:
            rejections[candidate.key] = rejection
        else:
            survivors.append(candidate)

    if options.segments is not None:
        survivors = _cut_segments(survivors, options, pool, rejections, report)

    kept = survivors
    policy = options.policy
    train_lines: list[str] = []
    validation_lines: list[str] = []
    prompts_used: Counter[str] = Counter()
    durations: list[float] = []
    train_seconds = 0.0
    total_seconds = 0.0
    for candidate in kept:
        assert candidate.info is not None  # set by _audio_checks for every survivor
        prompt = candidate.prompt
        head, tail = candidate.line_parts or _line_parts(
            candidate.key, prompt, candidate.location, candidate.transcript, candidate.text_length
        )
        line = f"{head}{candidate.info.fbank_frames}{tail}"
        seconds = candidate.info.duration_s
        durations.append(seconds)
        total_seconds += seconds
        if is_validation(candidate.key, options.val_fraction, options.val_seed):
            validation_lines.append(line)
        else:
            train_lines.append(line)
            train_seconds += seconds
            prompts_used[prompt] += 1

    report("write", 0, 1)
    rejects_in_order = [rejections[key] for key in order if key in rejections]
    if len(rejects_in_order) != len(rejections) or len(kept) + len(rejections) != len(order):
        raise RuntimeError("prep lost track of a key; this is a bug in speechft")  # the identity we promise
    _atomic_write(options.out, train_lines)
    val_path = options.val_path
    if val_path is not None:
        _atomic_write(val_path, validation_lines)
    _atomic_write(
        options.rejects_path,
        (f"{_tsv_field(item.key)}\t{item.reason}\t{_tsv_field(item.detail)}" for item in rejects_in_order),
    )
    sidecar = PromptSidecar(policy, dict(prompts_used.most_common()))
    sidecar_path = sidecar_path_for(options.out)
    _atomic_write(sidecar_path, [json.dumps(sidecar.to_json(), ensure_ascii=False, indent=2)])

    reason_counts = Counter(item.reason for item in rejects_in_order)
    profile, note = profile_for_hours(train_seconds / 3600)
    outputs = {"jsonl": str(options.out), "rejects": str(options.rejects_path), "summary": str(options.summary_path), "prompt": str(sidecar_path)}
    if val_path is not None:
        outputs["validation"] = str(val_path)
    summary = PrepSummary(
        total_keys=len(order),
        kept=len(kept),
        train=len(train_lines),
        validation=len(validation_lines),
        rejected={reason: reason_counts[reason] for reason in REJECT_REASONS if reason_counts[reason]},
        warnings={name: len(keys) for name, keys in warned.items() if keys},
        warning_examples={name: keys[:WARNING_EXAMPLES] for name, keys in warned.items() if keys},
        hours=total_seconds / 3600,
        train_hours=train_seconds / 3600,
        duration_s=Percentiles.of(durations),
        text_tokens=Percentiles.of([candidate.text_length for candidate in kept]),
        prompts_used=dict(prompts_used.most_common()),
        recommended_profile=profile,
        profile_note=note,
        outputs=outputs,
        tokenizer=f"{options.tokenizer_dir} ({counter.source})",
        jobs=jobs,
        elapsed_s=time.perf_counter() - started,
        max_reject_fraction=options.max_reject_fraction,
    )
    _atomic_write(options.summary_path, [json.dumps(summary.to_json(), ensure_ascii=False, indent=2)])
    report("write", 1, 1)
    if summary.reject_fraction > options.max_reject_fraction:
        raise TooManyRejectsError(summary)
    return summary


def _audio_checks(
    candidate: _Candidate, result: _ProbeResult, options: PrepOptions, warned: dict[str, list[str]]
) -> Rejection | None:
    """Header-based checks; sets `candidate.info` (for segments: the segment's 16 kHz extent)."""
    key = candidate.key
    if isinstance(result[0], str):
        reason, detail = result  # type: ignore[misc]
        if candidate.segment is not None:
            detail = f"recording {candidate.segment.recording}: {detail}"
        return Rejection(key, str(reason), str(detail))
    frames, sample_rate, channels = result  # type: ignore[misc]
    info = AudioInfo(int(frames), int(sample_rate), int(channels))
    if info.frames == 0:
        return Rejection(key, ZERO_LENGTH, f"{candidate.location}: 0 samples")
    if candidate.segment is not None:
        segment = candidate.segment
        duration_s = info.duration_s
        end_s = duration_s if segment.end_s == -1 else segment.end_s
        if segment.start_s >= duration_s or end_s > duration_s + SEGMENT_MAX_OVERSHOOT_S:
            return Rejection(
                key, BAD_SEGMENT,
                f"{segment.start_s}..{segment.end_s} s is outside recording {segment.recording} ({duration_s:.3f} s)",
            )
        length_16k = info.frames if info.sample_rate == MODEL_SAMPLE_RATE else math.ceil(info.frames * MODEL_SAMPLE_RATE / info.sample_rate)
        start = round(segment.start_s * MODEL_SAMPLE_RATE)
        end = min(round(end_s * MODEL_SAMPLE_RATE), length_16k)
        candidate.segment = Segment(segment.lineno, segment.key, segment.recording, start / MODEL_SAMPLE_RATE, end / MODEL_SAMPLE_RATE)
        info = AudioInfo(end - start, MODEL_SAMPLE_RATE, 1)
        if info.frames == 0:
            return Rejection(key, ZERO_LENGTH, f"segment {segment.start_s}..{segment.end_s} s has no samples")
    elif options.segments is None:
        if info.sample_rate != MODEL_SAMPLE_RATE:
            warned[RESAMPLED].append(key)
        if info.channels > 1:
            warned[DOWNMIXED].append(key)
    candidate.info = info
    frames = info.fbank_frames
    if frames < options.min_frames:
        return Rejection(key, TOO_SHORT, f"{frames} fbank frames ({info.duration_ms} ms) < --min-frames {options.min_frames}")
    if frames > options.max_frames:
        return Rejection(key, TOO_LONG, f"{frames} fbank frames ({info.duration_ms} ms) > --max-frames {options.max_frames}")
    if candidate.text_length > options.max_tokens:
        return Rejection(key, TOO_MANY_TOKENS, f"{candidate.text_length} tokens > --max-tokens {options.max_tokens}")
    return None


def _segment_candidates(
    options: PrepOptions,
    scp: KeyedFile,
    text: KeyedFile,
    rejections: dict[str, Rejection],
    candidates: list[_Candidate],
    warned: dict[str, list[str]],
) -> list[str]:
    """Line checks with a segments file; returns every key in report order.

    Utterance keys are segment ids (segments order), then transcripts with no segment; wav.scp
    keys are recordings, and a recording no segment uses is rejected as `no_segments`.
    """
    assert options.segments is not None
    segments_file = read_keyed_file(options.segments, value_required=True, what="recording and times")
    for key in segments_file.repeats:
        warned[REPEATED_LINE].append(key)
    used_recordings: set[str] = set()
    parsed: dict[str, Segment | BadLine] = {}
    for key, entry in segments_file.entries.items():
        parsed[key] = parse_segment(entry, options.segments)
        if isinstance(parsed[key], Segment):
            used_recordings.add(parsed[key].recording)  # type: ignore[union-attr]
        else:
            used_recordings.add(entry.value.split()[0])
    utterances = list(dict.fromkeys([*segments_file.keys_in_order(), *text.keys_in_order()]))
    for key in utterances:
        segment = parsed.get(key)
        if isinstance(segment, BadLine) and key not in segments_file.bad and key not in segments_file.conflicts:
            rejections[key] = Rejection(key, BAD_LINE, segment.detail)
            continue
        recording_key = segment.recording if isinstance(segment, Segment) else None
        location = None
        if recording_key is not None:
            if recording_key in scp.bad:
                rejections[key] = Rejection(key, BAD_LINE, f"recording {recording_key}: {scp.bad[recording_key].detail}")
                continue
            if recording_key in scp.conflicts:
                rejections[key] = Rejection(key, DUPLICATE_KEY, f"recording {recording_key}: different entries in {_where(scp, scp.conflicts[recording_key])}")
                continue
            entry = scp.entries.get(recording_key)
            if entry is None:
                rejections[key] = Rejection(key, NO_AUDIO, f"recording {recording_key} is not in {scp.name}")
                continue
            location = entry.value
        rejection = _line_checks(key, text, (segments_file,), location)
        if rejection is not None:
            rejections[key] = rejection
            continue
        assert location is not None and isinstance(segment, Segment)
        candidates.append(_Candidate(key, text.entries[key].value, _absolute(location), segment))
    utterance_keys = set(utterances)
    recordings = [key for key in scp.keys_in_order() if key not in used_recordings and key not in utterance_keys]
    for key in recordings:
        if key in scp.bad:
            rejections[key] = Rejection(key, BAD_LINE, scp.bad[key].detail)
        else:
            rejections[key] = Rejection(key, NO_SEGMENTS, f"no line of {options.segments} uses recording {key}")
    return utterances + recordings


def _cut_segments(
    survivors: list[_Candidate], options: PrepOptions, pool: Any, rejections: dict[str, Rejection], report: ProgressCallback
) -> list[_Candidate]:
    """Cut every surviving segment into its own file; survivors then point at those files."""
    assert options.audio_out is not None
    audio_out = Path(options.audio_out)
    try:
        audio_out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{audio_out}: cannot create ({error.strerror})") from None
    by_recording: dict[str, list[tuple[str, int, int, str]]] = {}
    for candidate in survivors:
        assert candidate.segment is not None
        start = round(candidate.segment.start_s * MODEL_SAMPLE_RATE)
        end = round(candidate.segment.end_s * MODEL_SAMPLE_RATE)
        target = os.path.abspath(audio_out / segment_file_name(candidate.key))
        by_recording.setdefault(candidate.location, []).append((candidate.key, start, end, target))
    work = [(location, items, options.url_timeout_s, options.url_retries) for location, items in by_recording.items()]
    results: dict[str, tuple[str, str, str] | tuple[str, int]] = {}
    report("segments", 0, len(survivors))
    done = 0
    if pool is not None and len(work) > 1:
        for batch in pool.imap(_cut_recording, work):
            results.update((item[0], item) for item in batch)
            done += len(batch)
            report("segments", done, len(survivors))
    else:
        for job in work:
            batch = _cut_recording(job)
            results.update((item[0], item) for item in batch)
            done += len(batch)
            report("segments", done, len(survivors))
    kept: list[_Candidate] = []
    for candidate in survivors:
        outcome = results[candidate.key]
        if len(outcome) == 3:
            _, reason, detail = outcome  # type: ignore[misc]
            rejections[candidate.key] = Rejection(candidate.key, str(reason), f"recording {candidate.location}: {detail}")
            continue
        target = os.path.abspath(audio_out / segment_file_name(candidate.key))
        candidate.info = AudioInfo(int(outcome[1]), MODEL_SAMPLE_RATE, 1)
        candidate.location = target
        kept.append(candidate)
    return kept
