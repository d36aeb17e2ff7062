"""The training dataset: manifest utterances -> features and token ids, one sample at a time.

:class:`SpeechDataset` loads audio with :func:`speechft.data.audio.load_audio` (local files or
URLs, kept in a download cache; channels averaged; resampled to 16 kHz), computes fbank/LFR with
the model's frontend and builds prompt ids and labels exactly as FunASRNano expects. A sample
that fails to load, or whose audio length disagrees with its `speech_length`, comes back as a
:class:`~speechft.data.manifest.Skip`; nothing is replaced by a random other sample. Its utterances
are a list, or a :class:`~speechft.data.index.ManifestIndex` that reads each line from disk when
its sample loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechft.data import audio
from speechft.data.augment import Augmentation
from speechft.data.index import ManifestIndex
from speechft.data.manifest import Skip, Utterance
from speechft.model.build import audio_token_count
from speechft.model.inputs import IGNORE_INDEX, compute_features, prompt_ids, target_ids

# Resampling rounds the sample count (one frame at most) and mp3 decoders differ by a few
# milliseconds of padding; more than this means the audio is not what prep measured.
SPEECH_FRAMES_TOLERANCE = 2


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
    """Index -> Sample (or Skip if its audio cannot be used). Picklable for loader workers (an
    index's open files are not pickled: each worker opens its own).

    `speech_buckets` / `token_buckets` are the batch shapes the training loader pads to (see
    :func:`speechft.data.collate.collate`); features are computed here, so in the loader's worker processes.
    `url_cache_dir` keeps URL audio on disk after its first download (None: download every time).
    With an `augmentation`, an item asked for as `(epoch, index)` is augmented for that epoch
    (the training loader asks so, through :class:`EpochTagged`); a plain index never is.
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
        augmentation: Augmentation | None = None,
    ) -> None:
        self.utterances: Sequence[Utterance] = utterances if isinstance(utterances, ManifestIndex) else list(utterances)
        self.url_cache_dir = url_cache_dir
        self.tokenizer = tokenizer
        self.frontend = frontend
        self.speech_buckets = tuple(speech_buckets)
        self.token_buckets = tuple(token_buckets)
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None

    def __len__(self) -> int:
        return len(self.utterances)

    def utterance_at(self, index: int) -> Utterance:
        """The manifest line of sample `index` (read from disk for an index)."""
        return self.utterances[index]

    def __getitem__(self, item: int | tuple[int, int]) -> Sample | Skip:
        epoch, index = item if isinstance(item, tuple) else (None, item)
        utterance = self.utterance_at(index)
        try:
            waveform = audio.load_audio(utterance.audio, cache_dir=self.url_cache_dir)
        except audio.AudioError as error:
            return Skip(utterance.key, f"audio unreadable: {error.detail}", utterance.where)
        frames = audio.fbank_frames_of(len(waveform))
        if frames < 1:
            return Skip(utterance.key, f"audio too short ({len(waveform)} samples)", utterance.where)
        if abs(frames - utterance.speech_frames) > SPEECH_FRAMES_TOLERANCE:
            return Skip(
                utterance.key,
                f"audio is {frames} fbank frames long but speech_length says {utterance.speech_frames} "
                "(file replaced or line edited?); rerun `speechft prep` to rewrite the jsonl",
                utterance.where,
            )
        if not np.isfinite(waveform).all():
            return Skip(utterance.key, "audio contains NaN or infinite samples", utterance.where)
        augmentation = self.augmentation if epoch is not None else None
        if augmentation is not None:
            waveform = augmentation.waveform(waveform, epoch, index)
        features = compute_features(self.frontend, waveform)
        if augmentation is not None:
            features = augmentation.features(features, epoch, index)
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


class EpochTagged:
    """A batch sampler's batches as `(epoch, index)` items, so the dataset knows which epoch's
    augmentation to draw (loader workers cannot see the sampler's epoch change)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __iter__(self) -> Any:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.sampler)
