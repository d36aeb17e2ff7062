"""The one audio loader of prep, train and decode: header facts, and samples as the model wants them.

- :func:`read_info` reads frames, sample rate and channels of a local file or an http(s) URL.
  Plain PCM/float WAV headers are parsed here (a tenth of the cost of `soundfile.info`, which
  matters at tens of thousands of files); anything else goes to soundfile (libsndfile), and what
  libsndfile refuses (m4a/AAC, AMR, WMA, audio inside video containers) to PyAV (FFmpeg).
- :func:`load_audio` returns mono float32 at :data:`MODEL_SAMPLE_RATE`: channels averaged, other
  rates resampled, through the same readers, so its length agrees with :func:`read_info`.
- URLs are downloaded by :mod:`speechft.data.remote` (timeout, retries, size cap, optional cache);
  what libsndfile refuses is decoded by :mod:`speechft.data.containers` (FFmpeg via PyAV).

Failures raise :class:`AudioError`, whose `reason` is one of the reject reasons prep reports.
"""

from __future__ import annotations

import io
import os
import struct
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechft.data import containers, remote
from speechft.data.remote import DEFAULT_URL_MAX_BYTES, DEFAULT_URL_RETRIES, DEFAULT_URL_TIMEOUT_S
from speechft.errors import InputError

if TYPE_CHECKING:
    import numpy as np

MODEL_SAMPLE_RATE = 16000
"""The rate Fun-ASR-Nano's frontend expects; every loader resamples to it."""
FILE_MISSING = "file_missing"
UNREADABLE_AUDIO = "unreadable_audio"
URL_UNREACHABLE = "url_unreachable"

# Enough for the fmt and data chunk headers of any WAV writer seen in practice (LIST/bext chunks
# before `data` included); a header that does not fit goes to soundfile.
HEADER_BYTES = 4096
# Suffixes of sample data without any header: neither libsndfile nor FFmpeg can know their rate,
# sample format or channel count, and FFmpeg would guess a wrong format for some of them.
RAW_PCM_SUFFIXES = frozenset({".raw", ".pcm", ".s16", ".s16le", ".s16be", ".u8", ".s8", ".f32", ".f32le", ".sln"})

_PCM = 1
_IEEE_FLOAT = 3
_EXTENSIBLE = 0xFFFE


class AudioError(InputError):
    """An audio entry that cannot be used; `reason` names the reject reason, the message the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: sample frames per channel, sample rate in Hz, channel count."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_ms(self) -> int:
        """Whole milliseconds, rounded down (exact integer arithmetic)."""
        return self.frames * 1000 // self.sample_rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def fbank_frames(self) -> int:
        """Kaldi fbank frames (25 ms window, 10 ms shift): `(duration_ms - 25) // 10 + 1`.

        Integer milliseconds make this exactly `1 + (samples - 400) // 160` at 16 kHz; upstream's
        float `duration * 1000` is one frame short for a few lengths (e.g. 16080 samples).
        """
        return (self.duration_ms - 25) // 10 + 1


def fbank_frames_of(sample_count: int) -> int:
    """Kaldi fbank frames of `sample_count` samples at :data:`MODEL_SAMPLE_RATE` (0 when shorter than one window)."""
    return max(0, AudioInfo(sample_count, MODEL_SAMPLE_RATE, 1).fbank_frames)


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _suffix(location: str) -> str:
    path = urllib.parse.urlsplit(location).path if is_url(location) else location
    return os.path.splitext(path)[1].lower()


def _headerless(name: str) -> AudioError:
    return AudioError(
        UNREADABLE_AUDIO,
        f"{name}: no audio header (headerless raw PCM?): nothing in the file says its sample rate, sample format "
        "or channels; convert it to WAV/FLAC with its sample rate, e.g. `sox -t raw -r 16000 -e signed -b 16 -c 1 IN OUT.wav`",
    )


def parse_wav_header(head: bytes, file_size: int) -> AudioInfo | None:
    """Frames, rate and channels of a plain PCM or float WAV from its first bytes.

    Returns None for anything this parser does not fully understand (compressed formats, RF64,
    streaming sizes, chunks past `head`), so the caller falls back to soundfile. A data chunk that
    claims more bytes than the file holds counts what is there, as libsndfile does.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    format_chunk: tuple[int, int, int, int, int] | None = None
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (size,) = struct.unpack_from("<I", head, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(head):
                return None
            tag, channels, sample_rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag == _EXTENSIBLE:
                if size < 40:
                    return None
                (tag,) = struct.unpack_from("<H", head, body + 24)
            format_chunk = (tag, channels, sample_rate, block_align, bits)
        elif chunk_id == b"data":
            if format_chunk is None or size in (0, 0xFFFFFFFF):
                return None
            tag, channels, sample_rate, block_align, bits = format_chunk
            plain = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _IEEE_FLOAT and bits in (32, 64))
            if not plain or channels < 1 or sample_rate < 1 or block_align != channels * (bits // 8):
                return None
            available = min(size, max(file_size - body, 0))
            return AudioInfo(available // block_align, sample_rate, channels)
        offset = body + size + (size & 1)
    return None


# --- the two decoders: libsndfile first, FFmpeg (PyAV) for what it refuses -----------------------


def _soundfile_errors() -> tuple[type[BaseException], ...]:
    import soundfile

    # TypeError: libsndfile wants a sample rate, i.e. the file has no header it knows.
    return (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError)


def _rewind(source: str | io.BytesIO) -> str | io.BytesIO:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return source


def _checked(info: AudioInfo, name: str) -> AudioInfo:
    if info.sample_rate < 1 or info.channels < 1:
        raise AudioError(UNREADABLE_AUDIO, f"{name}: header has sample rate {info.sample_rate}, {info.channels} channels")
    return info


def _ffmpeg(source: str | io.BytesIO, name: str, soundfile_problem: str, *, keep_samples: bool) -> containers.DecodedAudio:
    try:
        return containers.decode(_rewind(source), name, soundfile_problem, keep_samples=keep_samples)
    except containers.ContainerError as error:
        raise AudioError(UNREADABLE_AUDIO, str(error)) from None


def _probe(source: str | io.BytesIO, name: str) -> AudioInfo:
    """Header facts through libsndfile, else FFmpeg."""
    import soundfile

    if _suffix(name) in RAW_PCM_SUFFIXES:
        raise _headerless(name)
    try:
        info = soundfile.info(_rewind(source))
    except _soundfile_errors() as error:
        decoded = _ffmpeg(source, name, str(error), keep_samples=False)
        return AudioInfo(decoded.frames, decoded.sample_rate, decoded.channels)
    return _checked(AudioInfo(int(info.frames), int(info.samplerate), int(info.channels)), name)


def _decode(source: str | io.BytesIO, name: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples at the file's own rate, and that rate, through libsndfile, else FFmpeg."""
    import numpy as np
    import soundfile

    if _suffix(name) in RAW_PCM_SUFFIXES:
        raise _headerless(name)
    try:
        samples, rate = soundfile.read(_rewind(source), dtype="float32", always_2d=True)
    except _soundfile_errors() as error:
        decoded = _ffmpeg(source, name, str(error), keep_samples=True)
        return decoded.samples, decoded.sample_rate
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return mono, int(rate)


# --- local files and URLs -----------------------------------------------------------------------


def read_file_info(path: str) -> AudioInfo:
    """Header facts of a local file; raises AudioError (file_missing / unreadable_audio)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise AudioError(FILE_MISSING, f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(UNREADABLE_AUDIO, f"{path}: is a directory") from None
    except OSError as error:
        raise AudioError(UNREADABLE_AUDIO, f"{path}: cannot open ({error.strerror})") from None
    try:
        head = os.read(descriptor, HEADER_BYTES)
        file_size = os.fstat(descriptor).st_size
    except OSError as error:
        raise AudioError(UNREADABLE_AUDIO, f"{path}: cannot read ({error.strerror})") from None
    finally:
        os.close(descriptor)
    info = parse_wav_header(head, file_size)
    return info if info is not None else _probe(path, path)


def _open_url(location: str, cache_dir: str | os.PathLike[str] | None, timeout_s: float, retries: int, max_bytes: int) -> str | bytes:
    """The cached file's path, or the downloaded bytes when there is no cache (or it cannot be written)."""
    try:
        if cache_dir is None:
            return remote.fetch_url(location, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
        return remote.fetch_cached(location, cache_dir, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
    except remote.FetchError as error:
        raise AudioError(URL_UNREACHABLE, str(error)) from None


def read_info(
    location: str,
    *,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
    cache_dir: str | os.PathLike[str] | None = None,
) -> AudioInfo:
    """Header facts of a local path or an http(s) URL (downloaded, bounded by time and size;
    kept in `cache_dir` when given)."""
    if not is_url(location):
        return read_file_info(location)
    fetched = _open_url(location, cache_dir, timeout_s, retries, max_bytes)
    if isinstance(fetched, str):
        return read_file_info(fetched)
    info = parse_wav_header(fetched[:HEADER_BYTES], len(fetched))
    return info if info is not None else _probe(io.BytesIO(fetched), location)


def load_audio(
    location: str,
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Samples of a local file or URL as a 1-D float32 array: channels averaged, resampled to
    `sample_rate`. URLs are kept in `cache_dir` when given. Raises AudioError."""
    import numpy as np

    if is_url(location):
        fetched = _open_url(location, cache_dir, timeout_s, retries, DEFAULT_URL_MAX_BYTES)
        source: str | io.BytesIO = fetched if isinstance(fetched, str) else io.BytesIO(fetched)
    else:
        if not os.path.exists(location):
            raise AudioError(FILE_MISSING, f"{location}: no such file")
        source = location
    mono, rate = _decode(source, location)
    if rate != sample_rate and len(mono):
        import torch
        import torchaudio.functional

        mono = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def probe_seconds(location: str) -> float | None:
    """Seconds of audio in a local file, for planning memory before loading it: from the header
    (WAV parser, libsndfile) or the container's declared duration (FFmpeg, nothing decoded).
    None for URLs (not downloaded twice) and whatever declares no length."""
    import soundfile

    if is_url(location) or _suffix(location) in RAW_PCM_SUFFIXES:
        return None
    try:
        with open(location, "rb") as handle:
            head = handle.read(HEADER_BYTES)
        info = parse_wav_header(head, os.path.getsize(location))
    except OSError:
        return None
    if info is not None:
        return info.duration_s
    try:
        header = soundfile.info(location)
    except _soundfile_errors():
        return containers.declared_seconds(location)
    return header.frames / header.samplerate if header.samplerate > 0 else None
