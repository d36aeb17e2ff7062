"""Collation: samples padded into the tensors of one training step, and the loader that makes them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from speechft.data.dataset import EpochTagged, Sample, SpeechDataset
from speechft.data.manifest import Skip
from speechft.data.sampler import TokenBatchSampler
from speechft.model.inputs import IGNORE_INDEX


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

    def pin_memory(self) -> Batch:
        """The same batch with its tensors in page-locked memory (the loader calls this on CUDA): faster copies to the GPU."""
        tensors = ("input_ids", "attention_mask", "labels", "speech", "speech_lengths", "audio_starts", "audio_token_counts")
        return dataclasses.replace(self, **{name: getattr(self, name).pin_memory() for name in tensors})


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


def _worker_init(_: int) -> None:
    import torch

    # Each loader process computes features for one utterance at a time; threads would only fight.
    torch.set_num_threads(1)


class SeededItems:
    """The dataset as loader workers see it: items are (seed, epoch, index), and the torch RNG is
    seeded from `seed` before the sample is made. The frontend's dither then depends only on
    where the sample stands in the run, not on which worker made it or how long that worker has
    lived, so workers can persist across epochs and a resume in mid-epoch draws the same dither."""

    def __init__(self, dataset: SpeechDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int, int]) -> Sample | Skip:
        import torch

        seed, epoch, index = item
        # The CPU generator alone: torch.manual_seed also seeds every accelerator backend, ~100x slower.
        torch.default_generator.manual_seed(seed)
        return self.dataset[(epoch, index)]


class SeededBatches:
    """The sampler's batches as (seed, epoch, index) items (the epoch draws the augmentation); each seed is made of (run seed, epoch, rank,
    batch of the epoch, place in the batch), so a copy of an utterance drawn twice in one epoch gets its own dither."""

    def __init__(self, sampler: TokenBatchSampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        sampler = self.sampler
        base = ((self.seed * 1_000_003 + sampler.epoch) * 1_009 + sampler.rank) * 1_000_003
        # `start` counts the epoch's batches over every rank; this rank had done its share of them.
        for number, batch in enumerate(sampler, start=sampler.start // sampler.world_size):
            yield [((base + number * 1_009 + place) % 2**63, sampler.epoch, index) for place, index in enumerate(batch)]


def make_loader(dataset: SpeechDataset, sampler: TokenBatchSampler, num_workers: int, generator: Any = None, *, seed: int = 0, pin_memory: bool = False) -> Any:
    """A DataLoader yielding :class:`Batch` objects in the sampler's order; iterate it once per epoch
    after `sampler.set_epoch`.

    With workers, they start once and serve every epoch (`persistent_workers`), and each sample's
    randomness is seeded from `seed` and its place in the run (:class:`SeededBatches`). In-process
    (`num_workers=0`) samples draw from the training process's RNG, which checkpoints restore.
    `generator` seeds what the loader itself draws when an epoch starts; without one it would draw
    from the global torch RNG, which would shift dropout after a mid-epoch resume.
    """
    import torch

    return torch.utils.data.DataLoader(
        SeededItems(dataset) if num_workers else dataset,
        batch_sampler=SeededBatches(sampler, seed) if num_workers else EpochTagged(sampler),
        collate_fn=functools.partial(collate, speech_buckets=dataset.speech_buckets, token_buckets=dataset.token_buckets),
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=generator,
    )
