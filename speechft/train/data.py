"""Training data: ChatML jsonl manifests, a features dataset, token-budget batches.

- :func:`read_manifest` parses a jsonl (UPSTREAM.md §2) into :class:`Utterance` records. A line
  that cannot be used (bad JSON, missing fields, a user turn without the `!` that marks an audio
  path, which upstream would silently train text-only) is skipped with its key and reason.
- :class:`SpeechDataset` loads audio with :func:`speechft.data.audio.load_audio` (local files or
  URLs, kept in a download cache; channels averaged; resampled to 16 kHz), computes fbank/LFR with
  the model's frontend and builds prompt ids and labels exactly as FunASRNano expects. A sample
  that fails to load, or whose audio length disagrees with its `speech_length`, comes back as a
  :class:`Skip`; nothing is replaced by a random other sample.
- :class:`TokenBatchSampler` forms batches under a padded token budget, bucketed by length,
  shuffled by (seed, epoch), sharded by `rank`/`world_size`, resumable mid-epoch.
- :func:`collate` pads a list of samples into one batch (shapes in its docstring).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechft.data import audio
from speechft.errors import InputError
from speechft.model.build import audio_token_count
from speechft.model.inputs import IGNORE_INDEX, compute_features, prompt_ids, target_ids

# fbank frames per LFR frame (the released frontend's lfr_n): the feature axis a batch pads.
LFR_STRIDE = 6
# Resampling rounds the sample count (one frame at most) and mp3 decoders differ by a few
# milliseconds of padding; more than this means the audio is not what prep measured.
SPEECH_FRAMES_TOLERANCE = 2
SPEECH_PATTERN = re.compile(r"^(?P<prompt>.*?)<\|startofspeech\|>(?P<audio>.*?)<\|endofspeech\|>(?P<suffix>.*)$", re.S)


@dataclass(frozen=True)
class Utterance:
    """One usable jsonl line."""

    key: str
    audio: str
    system: str
    prompt: str
    suffix: str
    text: str
    speech_frames: int  # fbank frames, 10 ms each (`speech_length`)
    text_tokens: int  # transcript tokens (`text_length`)
    where: str  # file:line, for messages

    @property
    def batch_tokens(self) -> int:
        """What the token budget counts for this utterance, as upstream does."""
        return self.speech_frames + self.text_tokens

    @property
    def seconds(self) -> float:
        return self.speech_frames / 100.0

    @property
    def sort_key(self) -> tuple[int, int]:
        """Batches pad two axes, LFR frames and LLM tokens (prompt + audio tokens + transcript).
        Sorting by LFR frames, then transcript tokens, lines both up; sorting by their sum lets
        utterances of one frame count interleave with long and short transcripts."""
        return (-(-self.speech_frames // LFR_STRIDE), self.text_tokens)


@dataclass(frozen=True)
class Skip:
    """A line or sample left out, and why."""

    key: str
    reason: str
    where: str = ""


@dataclass(frozen=True)
class TrainSource:
    """One `--train` file and its weight: utterances drawn per epoch = weight x lines."""

    path: Path
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> TrainSource:
        """`a.jsonl` or `a.jsonl:0.2`."""
        path, _, tail = text.rpartition(":")
        if path and re.fullmatch(r"[0-9]*\.?[0-9]+(e-?[0-9]+)?", tail):
            weight = float(tail)
            if weight <= 0:
                raise InputError(f"--train {text}: the weight after ':' must be > 0")
            return cls(Path(path), weight)
        return cls(Path(text), 1.0)


def _skip(key: str, reason: str, where: str) -> Skip:
    return Skip(key=key, reason=reason, where=where)


def parse_line(line: str, where: str, fallback_key: str) -> Utterance | Skip:
    """One jsonl line -> Utterance, or Skip naming what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return _skip(fallback_key, f"not valid JSON ({error.msg})", where)
    if not isinstance(record, dict):
        return _skip(fallback_key, "not a JSON object", where)
    key = str(record.get("key") or fallback_key)
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return _skip(key, "no `messages` list", where)
    roles = [m.get("role") for m in messages]
    if roles != ["system", "user", "assistant"]:
        return _skip(key, f"messages must be system, user, assistant (got {', '.join(map(str, roles))})", where)
    system, user, assistant = (str(m.get("content", "")) for m in messages)
    match = SPEECH_PATTERN.match(user)
    if match is None:
        return _skip(key, "user turn has no <|startofspeech|>...<|endofspeech|> audio", where)
    audio = match["audio"]
    if not audio.startswith("!"):
        return _skip(key, "user turn has no '!' before the audio path (upstream would silently train text-only)", where)
    audio = audio[1:]
    if not audio:
        return _skip(key, "empty audio path", where)
    if not assistant.strip():
        return _skip(key, "empty transcript", where)
    try:
        speech_frames = int(record["speech_length"]) if "speech_length" in record else -1
        text_tokens = int(record["text_length"]) if "text_length" in record else -1
    except (TypeError, ValueError):
        return _skip(key, "speech_length/text_length are not integers", where)
    return Utterance(key, audio, system, match["prompt"], match["suffix"], assistant, speech_frames, text_tokens, where)


def _speech_frames_from_header(location: str, url_cache_dir: str | Path | None = None) -> int:
    return max(0, audio.read_info(location, cache_dir=url_cache_dir).fbank_frames)


def read_manifest(path: str | Path, tokenizer: Any = None, url_cache_dir: str | Path | None = None) -> tuple[list[Utterance], list[Skip]]:
    """All usable utterances of a jsonl, and the skipped lines.

    Missing `speech_length` is read from the audio header (URLs are downloaded into
    `url_cache_dir` when given); missing `text_length` is counted with `tokenizer` (required
    then). Raises InputError when the file is missing or nothing is usable.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    utterances: list[Utterance] = []
    skipped: list[Skip] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(_skip(f"line-{number}", "not UTF-8", where))
            continue
        if not line.strip():
            continue
        parsed = parse_line(line, where, f"line-{number}")
        if isinstance(parsed, Skip):
            skipped.append(parsed)
            continue
        if parsed.speech_frames < 0 or parsed.text_tokens < 0:
            try:
                frames = parsed.speech_frames if parsed.speech_frames >= 0 else _speech_frames_from_header(parsed.audio, url_cache_dir)
            except audio.AudioError as error:
                skipped.append(_skip(parsed.key, f"audio unreadable ({error.detail})", where))
                continue
            tokens = parsed.text_tokens
            if tokens < 0:
                if tokenizer is None:
                    raise InputError(f"{where}: no text_length; run `speechft prep` to write it")
                tokens = len(tokenizer.tokenize(parsed.text))
            parsed = dataclasses.replace(parsed, speech_frames=frames, text_tokens=tokens)
        utterances.append(parsed)
    if not utterances:
        reasons = "; ".join(sorted({s.reason for s in skipped})[:3]) or "the file is empty"
        raise InputError(f"{path}: no usable lines ({reasons})")
    return utterances, skipped


def filter_lengths(utterances: Sequence[Utterance], *, max_sample_tokens: int, min_speech_frames: int) -> tuple[list[Utterance], list[Skip]]:
    """Drop utterances too long for a batch or too short to be speech, each with its reason."""
    kept, skipped = [], []
    for utterance in utterances:
        if utterance.batch_tokens > max_sample_tokens:
            skipped.append(_skip(utterance.key, f"{utterance.batch_tokens} tokens > data.max_sample_tokens {max_sample_tokens}", utterance.where))
        elif utterance.speech_frames < min_speech_frames:
            skipped.append(_skip(utterance.key, f"{utterance.speech_frames} fbank frames < data.min_speech_frames {min_speech_frames}", utterance.where))
        else:
            kept.append(utterance)
    return kept, skipped


def hours_of(paths: Sequence[str | Path]) -> float:
    """Hours of audio in jsonl files from their `speech_length` fields (fast: no audio is opened)."""
    frames = 0
    for path in paths:
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    found = re.search(rb'"speech_length"\s*:\s*([0-9]+)', line)
                    if found:
                        frames += int(found.group(1))
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    return frames / 100.0 / 3600.0


def url_cache_dir(output_dir: Path, setting: str) -> Path | None:
    """Where a run keeps downloaded URL audio: `data.url_cache` relative to the output directory
    (absolute paths as they are, to share one cache between runs); None when it is empty."""
    if not setting:
        return None
    return output_dir / setting


@dataclass
class Sample:
    """One utterance ready for the model (before padding)."""

    key: str
    features: Any  # (frames, 560) float tensor
    input_ids: list[int]
    labels: list[int]
    audio_start: int
    audio_tokens: int
    seconds: float
    text: str
    prompt: str
    system: str


class SpeechDataset:
    """Index -> Sample (or Skip if its audio cannot be used). Picklable for loader workers.

    `speech_buckets` / `token_buckets` are the batch shapes the training loader pads to (see
    :func:`collate`); features are computed here, so in the loader's worker processes.
    `url_cache_dir` keeps URL audio on disk after its first download (None: download every time).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: Any,
        frontend: Any,
        *,
        speech_buckets: Sequence[int] = (),
        token_buckets: Sequence[int] = (),
        url_cache_dir: str | Path | None = None,
    ) -> None:
        self.utterances = list(utterances)
        self.url_cache_dir = url_cache_dir
        self.tokenizer = tokenizer
        self.frontend = frontend
        self.speech_buckets = tuple(speech_buckets)
        self.token_buckets = tuple(token_buckets)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Sample | Skip:
        utterance = self.utterances[index]
        try:
            waveform = audio.load_audio(utterance.audio, cache_dir=self.url_cache_dir)
        except audio.AudioError as error:
            return _skip(utterance.key, f"audio unreadable: {error.detail}", utterance.where)
        if len(waveform) < 400:  # shorter than one 25 ms fbank window
            return _skip(utterance.key, f"audio too short ({len(waveform)} samples)", utterance.where)
        frames = audio.fbank_frames_of(len(waveform))
        if abs(frames - utterance.speech_frames) > SPEECH_FRAMES_TOLERANCE:
            return _skip(
                utterance.key,
                f"audio is {frames} fbank frames long but speech_length says {utterance.speech_frames} "
                "(file replaced or line edited?); rerun `speechft prep` to rewrite the jsonl",
                utterance.where,
            )
        if not np.isfinite(waveform).all():
            return _skip(utterance.key, "audio contains NaN or infinite samples", utterance.where)
        features = compute_features(self.frontend, waveform)
        audio_tokens = audio_token_count(int(features.shape[0]))
        source, audio_start = prompt_ids(self.tokenizer, utterance.prompt, audio_tokens, system=utterance.system, suffix=utterance.suffix)
        target = target_ids(self.tokenizer, utterance.text)
        return Sample(
            key=utterance.key,
            features=features,
            input_ids=source + target,
            labels=[IGNORE_INDEX] * len(source) + target,
            audio_start=audio_start,
            audio_tokens=audio_tokens,
            seconds=len(waveform) / audio.MODEL_SAMPLE_RATE,
            text=utterance.text,
            prompt=utterance.prompt,
            system=utterance.system,
        )


@dataclass
class Batch:
    """Padded tensors for one step.

    input_ids (B, L) long, right-padded with 0; attention_mask (B, L) long; labels (B, L) long,
    -100 except transcript + <|im_end|>; speech (B, T, 560) float; speech_lengths (B,) long;
    audio_starts / audio_token_counts (B,) long. `skipped` lists samples of this batch that failed.
    """

    keys: list[str]
    input_ids: Any
    attention_mask: Any
    labels: Any
    speech: Any
    speech_lengths: Any
    audio_starts: Any
    audio_token_counts: Any
    seconds: float
    target_tokens: int
    padding_fraction: float
    samples: list[Sample] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def bucket_size(length: int, sizes: Sequence[int]) -> int:
    """The smallest of the ascending `sizes` that holds `length`; `length` itself past the largest."""
    for size in sizes:
        if size >= length:
            return size
    return length


def collate(items: Sequence[Sample | Skip], speech_buckets: Sequence[int] = (), token_buckets: Sequence[int] = ()) -> Batch:
    """Pad samples into a :class:`Batch`: each axis to its longest sample, or up to the smallest
    of `speech_buckets` (LFR frames) / `token_buckets` (LLM tokens) that fits, so that batches
    come in a few fixed shapes. Extra padding is masked and does not change the loss."""
    import torch

    samples = [item for item in items if isinstance(item, Sample)]
    skipped = [item for item in items if isinstance(item, Skip)]
    if not samples:
        empty = torch.zeros(0, dtype=torch.long)
        return Batch([], empty, empty, empty, torch.zeros(0, 0, 0), empty, empty, empty, 0.0, 0, 0.0, [], skipped)
    width = bucket_size(max(len(s.input_ids) for s in samples), token_buckets)
    count = len(samples)
    input_ids = torch.zeros((count, width), dtype=torch.long)
    attention_mask = torch.zeros((count, width), dtype=torch.long)
    labels = torch.full((count, width), IGNORE_INDEX, dtype=torch.long)
    for row, sample in enumerate(samples):
        length = len(sample.input_ids)
        input_ids[row, :length] = torch.tensor(sample.input_ids)
        attention_mask[row, :length] = 1
        labels[row, :length] = torch.tensor(sample.labels)
    speech = torch.nn.utils.rnn.pad_sequence([s.features for s in samples], batch_first=True)
    frames = bucket_size(int(speech.shape[1]), speech_buckets)
    if frames > speech.shape[1]:
        speech = torch.nn.functional.pad(speech, (0, 0, 0, frames - int(speech.shape[1])))
    speech_lengths = torch.tensor([int(s.features.shape[0]) for s in samples], dtype=torch.long)
    real = int(attention_mask.sum()) + int(speech_lengths.sum())
    padded = count * width + count * int(speech.shape[1])
    return Batch(
        keys=[s.key for s in samples],
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        speech=speech,
        speech_lengths=speech_lengths,
        audio_starts=torch.tensor([s.audio_start for s in samples], dtype=torch.long),
        audio_token_counts=torch.tensor([s.audio_tokens for s in samples], dtype=torch.long),
        seconds=sum(s.seconds for s in samples),
        target_tokens=int((labels[:, 1:] != IGNORE_INDEX).sum()),
        padding_fraction=1.0 - real / padded if padded else 0.0,
        samples=samples,
        skipped=skipped,
    )


def token_budget_batches(
    order: Sequence[int], lengths: Sequence[int], *, token_budget: int, max_utterances: int, sort_buffer: int, sort_keys: Sequence[Any] | None = None
) -> list[list[int]]:
    """Cut `order` into batches: within each buffer of `sort_buffer` indices sorted by `sort_keys`
    (default: `lengths`), add utterances while `longest x count <= token_budget` and
    `count <= max_utterances`, `longest` being the batch's largest `lengths` value."""
    keys = lengths if sort_keys is None else sort_keys
    batches: list[list[int]] = []
    for begin in range(0, len(order), sort_buffer):
        bucket = sorted(order[begin : begin + sort_buffer], key=lambda index: (keys[index], index))
        current: list[int] = []
        longest = 0
        for index in bucket:
            grown = max(longest, lengths[index])
            if current and (grown * (len(current) + 1) > token_budget or len(current) >= max_utterances):
                batches.append(current)
                current, grown = [], lengths[index]
            current.append(index)
            longest = grown
        if current:
            batches.append(current)
    return batches


def split_for_ranks(batches: list[list[int]], world_size: int) -> list[list[int]]:
    """`batches` made a multiple of `world_size` long by halving the largest ones, so that every
    rank gets the same number of batches and no utterance is dropped or repeated. Only when too few
    batches hold two or more utterances are the last few left out (the caller slices them off)."""
    batches = [list(batch) for batch in batches]
    while len(batches) % world_size:
        largest = max(range(len(batches)), key=lambda position: (len(batches[position]), position), default=None)
        if largest is None or len(batches[largest]) < 2:
            break
        batch = batches[largest]
        middle = len(batch) // 2
        batches[largest : largest + 1] = [batch[:middle], batch[middle:]]
    return batches


class TokenBatchSampler:
    """Deterministic token-budget batches for one rank of `world_size`, resumable mid-epoch.

    Each epoch draws, for every source group, `weight x size` utterances (whole copies plus a
    seeded random part), shuffles them by (seed, epoch), buckets by length and shuffles the
    batches. Rank r takes batches r, r + world_size, ...; every rank gets the same count (the largest
    batches are halved until the count divides evenly) so ranks step together and, over the ranks,
    each epoch covers every utterance exactly once. `set_epoch(epoch, start)`
    resumes after `start` batches of that epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        token_budget: int,
        max_utterances: int,
        sort_buffer: int = 1024,
        seed: int = 0,
        groups: Sequence[Sequence[int]] | None = None,
        weights: Sequence[float] | None = None,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        sort_keys: Sequence[Any] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.lengths = list(lengths)
        # What buffers are sorted by (Utterance.sort_key); the budget still counts `lengths`.
        self.sort_keys = list(sort_keys) if sort_keys is not None else None
        self.token_budget = token_budget
        self.max_utterances = max_utterances
        self.sort_buffer = sort_buffer
        self.seed = seed
        self.groups = [list(g) for g in groups] if groups is not None else [list(range(len(self.lengths)))]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.groups)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def _rng(self, epoch: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + epoch)

    def epoch_order(self, epoch: int) -> list[int]:
        rng = self._rng(epoch)
        order: list[int] = []
        for group, weight in zip(self.groups, self.weights):
            whole = int(math.floor(weight))
            order.extend(group * whole)
            extra = round((weight - whole) * len(group))
            if extra:
                order.extend(rng.sample(group, extra) if self.shuffle else group[:extra])
        if self.shuffle:
            rng.shuffle(order)
        return order

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`, in order."""
        batches = token_budget_batches(
            self.epoch_order(epoch),
            self.lengths,
            token_budget=self.token_budget,
            max_utterances=self.max_utterances,
            sort_buffer=self.sort_buffer if self.shuffle else max(1, len(self.lengths)),
            sort_keys=self.sort_keys,
        )
        if self.shuffle:
            self._rng(epoch).shuffle(batches)
        batches = split_for_ranks(batches, self.world_size)
        per_rank = len(batches) // self.world_size
        return batches[self.rank :: self.world_size][:per_rank]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.start :]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start}


def _worker_init(_: int) -> None:
    import torch

    # Each loader process computes features for one utterance at a time; threads would only fight.
    torch.set_num_threads(1)


def make_loader(dataset: SpeechDataset, sampler: TokenBatchSampler, num_workers: int, generator: Any = None) -> Any:
    """A DataLoader yielding :class:`Batch` objects in the sampler's order.

    `generator` seeds the worker processes; without one the loader draws that seed from the global
    torch RNG each time it starts, which would shift dropout after a mid-epoch resume.
    """
    import torch

    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=functools.partial(collate, speech_buckets=dataset.speech_buckets, token_buckets=dataset.token_buckets),
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False,
        generator=generator,
    )
