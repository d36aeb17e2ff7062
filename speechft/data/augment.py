"""Training-time augmentation: speed perturbation, gain, additive noise, SpecAugment.

Everything here is a pure function of (seed, epoch, utterance index): a sample looks the same
whichever loader worker builds it and however often the run was stopped and resumed, so exact
resume stays bitwise with augmentation on. The order is the usual one: speed (resampling, which
changes the length and the pitch, as Kaldi's `sox speed`), gain, noise at a random SNR, then the
features, then SpecAugment masks on the LFR features (each frequency mask covers the same mel
bins in every stacked frame). Validation and decoding never see any of it: they build their
samples without an :class:`Augmentation`.

The speed factor is drawn with a vectorised hash, so the sampler can batch every epoch by the
perturbed lengths (:class:`SpeedLengths`) without building a sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechft.data import audio

# Streams of one sample's randomness: each draw has its own, so switching one augmentation on or
# off does not change what the others draw.
_GAIN, _NOISE, _SPEC = 1, 2, 3
NOISE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".wma", ".amr", ".sph", ".aiff", ".aif"})
_NOISE_CACHE_SECONDS = 600.0  # noise audio kept in memory per loader process


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 values (wrapping arithmetic): a cheap, well-spread hash."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def speed_choices(seed: int, epoch: int, indices: np.ndarray, count: int) -> np.ndarray:
    """For each utterance index, which of `count` speed factors it gets in `epoch` (vectorised)."""
    with np.errstate(over="ignore"):
        base = _mix64(np.array([seed * 1_000_003 + epoch], dtype=np.uint64))[0]
        return (_mix64(np.asarray(indices, dtype=np.uint64) ^ base) % np.uint64(count)).astype(np.int64)


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, stream])


@dataclass(frozen=True)
class Augmentation:
    """What to apply to training samples (built from the `augment:` config section)."""

    seed: int = 0
    speed_factors: tuple[float, ...] = ()  # () or (1.0,): no speed perturbation
    gain_db: tuple[float, float] = (0.0, 0.0)
    noise_files: tuple[str, ...] = ()
    noise_probability: float = 0.0
    noise_snr_db: tuple[float, float] = (10.0, 20.0)
    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0
    time_mask_max_fraction: float = 0.2
    mel_bins: int = 80  # SpecAugment's frequency axis: the fbank bins inside each stacked LFR frame

    @property
    def perturbs_speed(self) -> bool:
        return any(factor != 1.0 for factor in self.speed_factors)

    @property
    def active(self) -> bool:
        return self.perturbs_speed or self.gain_db != (0.0, 0.0) or self.adds_noise or self.masks

    @property
    def adds_noise(self) -> bool:
        return bool(self.noise_files) and self.noise_probability > 0

    @property
    def masks(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_width > 0) or (self.time_masks > 0 and self.time_mask_width > 0)

    def speed_factor(self, epoch: int, index: int) -> float:
        if not self.perturbs_speed:
            return 1.0
        return self.speed_factors[int(speed_choices(self.seed, epoch, np.array([index]), len(self.speed_factors))[0])]

    def waveform(self, samples: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """Speed, gain and noise applied to a 16 kHz mono waveform."""
        factor = self.speed_factor(epoch, index)
        if factor != 1.0:
            samples = perturb_speed(samples, factor)
        low, high = self.gain_db
        if (low, high) != (0.0, 0.0):
            samples = samples * np.float32(10 ** (sample_rng(self.seed, epoch, index, _GAIN).uniform(low, high) / 20))
        if self.adds_noise:
            rng = sample_rng(self.seed, epoch, index, _NOISE)
            if rng.random() < self.noise_probability:
                samples = add_noise(samples, self.noise_files, rng, self.noise_snr_db)
        return np.ascontiguousarray(samples, dtype=np.float32)

    def features(self, features: Any, epoch: int, index: int) -> Any:
        """SpecAugment: frequency masks (the same mel bins in every stacked frame) and time masks,
        filled with the utterance's mean feature value."""
        if not self.masks:
            return features
        rng = sample_rng(self.seed, epoch, index, _SPEC)
        masked = features.clone()
        frames, width = int(masked.shape[0]), int(masked.shape[1])
        fill = float(masked.mean())
        bins = self.mel_bins if width % self.mel_bins == 0 else width
        stacked = masked.view(frames, width // bins, bins)
        for _ in range(self.freq_masks if self.freq_mask_width else 0):
            size = int(rng.integers(0, min(self.freq_mask_width, bins) + 1))
            start = int(rng.integers(0, bins - size + 1))
            stacked[:, :, start : start + size] = fill
        longest = min(self.time_mask_width, int(frames * self.time_mask_max_fraction))
        for _ in range(self.time_masks if longest > 0 else 0):
            size = int(rng.integers(0, longest + 1))
            start = int(rng.integers(0, frames - size + 1))
            masked[start : start + size] = fill
        return masked


def perturb_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play `samples` `factor` times faster (shorter for factor > 1), pitch moving with it: the
    signal is read as if it had been recorded at rate x factor, then resampled back.

    scipy's polyphase filter runs on one thread, so every loader process (and the training process,
    whatever its torch thread count) computes the same samples bit for bit."""
    from scipy.signal import resample_poly

    source = round(audio.MODEL_SAMPLE_RATE * factor)
    divisor = math.gcd(source, audio.MODEL_SAMPLE_RATE)
    resampled = resample_poly(np.asarray(samples, dtype=np.float64), audio.MODEL_SAMPLE_RATE // divisor, source // divisor)
    return resampled.astype(np.float32)


def perturbed_length(sample_count: int, factor: float) -> int:
    """The number of samples :func:`perturb_speed` returns for `sample_count` samples."""
    if factor == 1.0:
        return sample_count
    source = round(audio.MODEL_SAMPLE_RATE * factor)
    return math.ceil(sample_count * audio.MODEL_SAMPLE_RATE / source)


_noise_cache: dict[str, np.ndarray] = {}


def _noise_samples(path: str) -> np.ndarray | None:
    """A noise file's 16 kHz samples, kept per process up to a bound; None if it cannot be read."""
    cached = _noise_cache.get(path)
    if cached is not None:
        return cached
    try:
        samples = audio.load_audio(path)
    except audio.AudioError:
        return None
    if sum(len(s) for s in _noise_cache.values()) + len(samples) > _NOISE_CACHE_SECONDS * audio.MODEL_SAMPLE_RATE:
        _noise_cache.clear()
    _noise_cache[path] = samples
    return samples


def add_noise(samples: np.ndarray, files: Sequence[str], rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """`samples` plus a random stretch of a random noise file (repeated if shorter) at a random SNR."""
    noise = _noise_samples(files[int(rng.integers(0, len(files)))])
    snr = rng.uniform(*snr_db)
    if noise is None or not len(noise) or not len(samples):
        return samples
    if len(noise) < len(samples):
        noise = np.tile(noise, math.ceil(len(samples) / len(noise)))
    start = int(rng.integers(0, len(noise) - len(samples) + 1))
    stretch = noise[start : start + len(samples)]
    signal_power = float(np.mean(samples.astype(np.float64) ** 2))
    noise_power = float(np.mean(stretch.astype(np.float64) ** 2))
    if signal_power == 0.0 or noise_power == 0.0:
        return samples
    scale = math.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
    return samples + (stretch * scale).astype(np.float32)


@dataclass(frozen=True)
class NoiseScan:
    usable: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]  # (path, why)


def scan_noise_dir(directory: str | Path) -> NoiseScan:
    """The audio files under `directory` (recursively) whose headers can be read; the others with why.

    Files with a suffix that is not audio (READMEs, licences) are not noise and are passed over."""
    root = Path(directory)
    usable: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in NOISE_SUFFIXES):
        try:
            info = audio.read_file_info(str(path))
        except audio.AudioError as error:
            unreadable.append((str(path), error.detail))
            continue
        if info.frames <= 0:
            unreadable.append((str(path), "no samples"))
        else:
            usable.append(str(path))
    return NoiseScan(tuple(usable), tuple(unreadable))


@dataclass(frozen=True)
class SpeedLengths:
    """Per-epoch batch lengths (fbank frames + text tokens) under speed perturbation, for the sampler.

    Frames are rescaled by each utterance's factor in that epoch, as :func:`perturb_speed` changes
    them; picklable and vectorised (millions of utterances in well under a second)."""

    frames: np.ndarray
    text_tokens: np.ndarray
    factors: tuple[float, ...]
    seed: int

    def __call__(self, epoch: int) -> np.ndarray:
        choice = speed_choices(self.seed, epoch, np.arange(len(self.frames)), len(self.factors))
        scale = np.asarray(self.factors, dtype=np.float64)[choice]
        return np.ceil(np.asarray(self.frames, dtype=np.float64) / scale).astype(np.int64) + np.asarray(self.text_tokens, dtype=np.int64)
