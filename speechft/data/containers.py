"""Audio that libsndfile refuses (m4a/AAC, AMR, WMA, audio inside video containers), decoded by FFmpeg through PyAV.

The audio loader comes here only after libsndfile gave up, and passes its complaint along so that a
file neither can read is reported with both reasons. Failures raise :class:`ContainerError`; the
loader reports them as the `unreadable_audio` reject reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from speechft.errors import InputError

if TYPE_CHECKING:
    import numpy as np


class ContainerError(InputError):
    """A file FFmpeg cannot read as audio either; the message names the file and what both decoders said."""


@dataclass(frozen=True)
class DecodedAudio:
    """The first audio stream: sample frames per channel, sample rate in Hz and channel count, and
    its samples as mono float32 at that rate (empty unless asked for)."""

    frames: int
    sample_rate: int
    channels: int
    samples: np.ndarray


def _open(source: str | io.BytesIO, name: str, soundfile_problem: str) -> tuple[Any, Any]:
    """An FFmpeg container with its first audio stream, or ContainerError naming both decoders' complaints."""
    import av

    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        raise ContainerError(f"{name}: not readable as audio (libsndfile: {soundfile_problem}; FFmpeg: {error})") from None
    if not container.streams.audio:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "no streams"
        container.close()
        raise ContainerError(
            f"{name}: no audio stream (libsndfile: {soundfile_problem}; FFmpeg reads it as {container.format.name} with {kinds}); "
            "if it is headerless raw PCM, convert it to WAV/FLAC with its sample rate",
        )
    return container, container.streams.audio[0]


def _declared_frames(stream: Any, sample_rate: int) -> int | None:
    """Sample frames the container declares for the stream: encoders pad the last packet (AAC to
    1024 samples), and the declared length is the recording's, so decoding stops there."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    return int(Fraction(stream.duration) * stream.time_base * sample_rate)


def _mono(planes: np.ndarray) -> np.ndarray:
    import numpy as np

    return planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0].astype(np.float32, copy=False)


def decode(source: str | io.BytesIO, name: str, soundfile_problem: str, *, keep_samples: bool) -> DecodedAudio:
    """Decode the first audio stream of `source` (a path, or bytes positioned at their start).

    Counting decodes too, with `keep_samples=False`: only decoding gives the exact length that
    loading will produce (container durations are estimates for some formats).
    """
    import av
    import numpy as np

    container, stream = _open(source, name, soundfile_problem)
    with container:
        sample_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.layout.nb_channels or 0)
        if sample_rate < 1 or channels < 1:
            raise ContainerError(f"{name}: header has sample rate {sample_rate}, {channels} channels")
        limit = _declared_frames(stream, sample_rate)
        # Planar float at the first frame's layout and rate, whatever the codec's native sample format.
        converter = av.AudioResampler(format="fltp")
        pieces: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                if not keep_samples:
                    total += frame.samples
                    continue
                # Downmix frame by frame: an hour of stereo 48 kHz would otherwise sit in memory twice.
                pieces.extend(_mono(converted.to_ndarray()) for converted in converter.resample(frame))
            if keep_samples:
                pieces.extend(_mono(converted.to_ndarray()) for converted in converter.resample(None))
                total = sum(len(piece) for piece in pieces)
        except (av.FFmpegError, ValueError) as error:
            raise ContainerError(f"{name}: FFmpeg cannot decode its {stream.codec_context.name} audio ({error})") from None
    frames = min(total, limit) if limit is not None else total
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return DecodedAudio(frames, sample_rate, channels, samples[:frames])


def declared_seconds(path: str) -> float | None:
    """The container's own duration of the first audio stream, without decoding; None when it declares none."""
    import av

    try:
        with av.open(path, mode="r") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            frames = _declared_frames(stream, rate) if rate else None
            if frames is not None:
                return frames / rate
            return container.duration / 1_000_000 if container.duration else None
    except (av.FFmpegError, OSError, ValueError):
        return None
