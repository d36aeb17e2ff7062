"""The one audio loader of prep, train and decode: header facts, and samples as the model wants them.

- :func:`read_info` reads frames, sample rate and channels of a local file or an http(s) URL.
  Plain PCM/float WAV headers are parsed here (a tenth of the cost of `soundfile.info`, which
  matters at tens of thousands of files); anything else goes to soundfile (libsndfile), and what
  libsndfile refuses (m4a/AAC, AMR, WMA, audio inside video containers) to PyAV (FFmpeg).
- :func:`load_audio` returns mono float32 at :data:`MODEL_SAMPLE_RATE`: channels averaged, other
  rates resampled, through the same readers, so its length agrees with :func:`read_info`.
- URLs are downloaded with a timeout, retries and a size cap; with a `cache_dir` each URL is
  downloaded once into a file named by a hash of the URL (written atomically, so loader workers
  and ranks sharing the directory never see half a file).

Failures raise :class:`AudioError`, whose `reason` is one of the reject reasons prep reports.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from speechft.errors import InputError

if TYPE_CHECKING:
    import numpy as np

MODEL_SAMPLE_RATE = 16000
"""The rate Fun-ASR-Nano's frontend expects; every loader resamples to it."""
FILE_MISSING = "file_missing"
UNREADABLE_AUDIO = "unreadable_audio"
URL_UNREACHABLE = "url_unreachable"

DEFAULT_URL_TIMEOUT_S = 30.0
DEFAULT_URL_RETRIES = 2
DEFAULT_URL_MAX_BYTES = 1 << 30
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


def _pyav_open(source: str | io.BytesIO, name: str, soundfile_problem: str):
    """An FFmpeg container with its first audio stream, or AudioError naming both decoders' complaints."""
    import av

    try:
        container = av.open(_rewind(source), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        raise AudioError(UNREADABLE_AUDIO, f"{name}: not readable as audio (libsndfile: {soundfile_problem}; FFmpeg: {error})") from None
    if not container.streams.audio:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "no streams"
        container.close()
        raise AudioError(
            UNREADABLE_AUDIO,
            f"{name}: no audio stream (libsndfile: {soundfile_problem}; FFmpeg reads it as {container.format.name} with {kinds}); "
            "if it is headerless raw PCM, convert it to WAV/FLAC with its sample rate",
        )
    return container, container.streams.audio[0]


def _declared_frames(stream, sample_rate: int) -> int | None:
    """Sample frames the container declares for the stream: encoders pad the last packet (AAC to
    1024 samples), and the declared length is the recording's, so decoding stops there."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    return int(Fraction(stream.duration) * stream.time_base * sample_rate)


def _pyav_decode(source: str | io.BytesIO, name: str, soundfile_problem: str, *, keep_samples: bool) -> tuple[AudioInfo, np.ndarray]:
    """Decode the first audio stream: (frames, rate, channels), and the mono float32 samples at
    the stream's own rate when `keep_samples` (else an empty array). Counting decodes too: only decoding gives the exact
    length that loading will produce (container durations are estimates for some formats)."""
    import av
    import numpy as np

    container, stream = _pyav_open(source, name, soundfile_problem)
    with container:
        sample_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.layout.nb_channels or 0)
        _checked(AudioInfo(0, sample_rate, channels), name)
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
                for converted in converter.resample(frame):
                    planes = converted.to_ndarray()
                    # Downmix frame by frame: an hour of stereo 48 kHz would otherwise sit in memory twice.
                    pieces.append(planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0].astype(np.float32, copy=False))
                    total += planes.shape[1]
            if keep_samples:
                for converted in converter.resample(None):
                    planes = converted.to_ndarray()
                    pieces.append(planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes[0].astype(np.float32, copy=False))
                    total += planes.shape[1]
        except (av.FFmpegError, ValueError) as error:
            raise AudioError(UNREADABLE_AUDIO, f"{name}: FFmpeg cannot decode its {stream.codec_context.name} audio ({error})") from None
    frames = min(total, limit) if limit is not None else total
    info = AudioInfo(frames, sample_rate, channels)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return info, samples[:frames]


def _probe(source: str | io.BytesIO, name: str) -> AudioInfo:
    """Header facts through libsndfile, else FFmpeg."""
    import soundfile

    if _suffix(name) in RAW_PCM_SUFFIXES:
        raise _headerless(name)
    try:
        info = soundfile.info(_rewind(source))
    except _soundfile_errors() as error:
        return _pyav_decode(source, name, str(error), keep_samples=False)[0]
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
        info, mono = _pyav_decode(source, name, str(error), keep_samples=True)
        return mono, info.sample_rate
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


def fetch_url(
    url: str,
    *,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> bytes:
    """Download `url` with a per-attempt timeout, `retries` extra attempts and a size cap.

    A 4xx answer is final (retrying will not help); timeouts, connection errors and 5xx are
    retried with a short growing pause. Raises AudioError(url_unreachable).
    """
    last_problem = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                body = response.read(max_bytes + 1)
        except urllib.error.HTTPError as error:
            last_problem = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500:
                break
            continue
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            last_problem = str(reason) or type(reason).__name__
            continue
        if len(body) > max_bytes:
            raise AudioError(URL_UNREACHABLE, f"{url}: larger than {max_bytes} bytes; download it and list the file")
        return body
    tries = f" after {retries + 1} attempts" if retries else ""
    raise AudioError(URL_UNREACHABLE, f"{url}: {last_problem}{tries}")


def url_cache_path(url: str, cache_dir: str | os.PathLike[str]) -> str:
    """Where `url` is kept in `cache_dir`: a hash of the URL, plus its suffix so formats stay recognisable."""
    suffix = _suffix(url)
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ""
    return os.path.join(os.fspath(cache_dir), hashlib.sha256(url.encode("utf-8")).hexdigest() + suffix)


def fetch_cached(
    url: str,
    cache_dir: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> str | bytes:
    """The local path of `url` in `cache_dir`, downloading it the first time.

    The download goes to a temporary file that is renamed into place, so concurrent readers
    (loader workers, other ranks) see the whole file or none; two that download at once both
    rename, and either copy is the same. When the cache cannot be written (disk full, read-only)
    the downloaded bytes are returned instead, so the run goes on, downloading again next time.
    """
    target = url_cache_path(url, cache_dir)
    if os.path.exists(target):
        return target
    body = fetch_url(url, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
    temporary = None
    try:
        os.makedirs(os.fspath(cache_dir), exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=os.fspath(cache_dir), prefix=".download-")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
        os.replace(temporary, target)
    except OSError:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        return body
    return target


def _open_url(location: str, cache_dir: str | os.PathLike[str] | None, timeout_s: float, retries: int, max_bytes: int) -> str | bytes:
    if cache_dir is None:
        return fetch_url(location, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
    return fetch_cached(location, cache_dir, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)


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
        return _declared_seconds(location)
    return header.frames / header.samplerate if header.samplerate > 0 else None


def _declared_seconds(path: str) -> float | None:
    """The container's own duration of the first audio stream, without decoding."""
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
