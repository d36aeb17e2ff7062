"""Audio facts from headers, and audio samples as the model wants them.

- :func:`read_info` reads frames, sample rate and channels from a file header or a URL, never
  decoding samples. Plain PCM/float WAV headers are parsed here (a tenth of the cost of
  `soundfile.info`, which matters at tens of thousands of files); anything else goes to soundfile.
- :func:`load_audio` returns mono float32 at 16 kHz: channels averaged, other rates resampled.

Failures raise :class:`AudioError`, whose `reason` is one of the reject reasons prep reports.
"""

from __future__ import annotations

import io
import os
import struct
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechft.errors import InputError

if TYPE_CHECKING:
    import numpy as np

MODEL_SAMPLE_RATE = 16000
FILE_MISSING = "file_missing"
UNREADABLE_AUDIO = "unreadable_audio"
URL_UNREACHABLE = "url_unreachable"

DEFAULT_URL_TIMEOUT_S = 30.0
DEFAULT_URL_RETRIES = 2
DEFAULT_URL_MAX_BYTES = 1 << 30
# Enough for the fmt and data chunk headers of any WAV writer seen in practice (LIST/bext chunks
# before `data` included); a header that does not fit goes to soundfile.
HEADER_BYTES = 4096

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


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


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


def _soundfile_info(source: str | io.BytesIO, name: str) -> AudioInfo:
    import soundfile

    try:
        info = soundfile.info(source)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(UNREADABLE_AUDIO, f"{name}: not readable as audio ({error})") from None
    if info.samplerate < 1 or info.channels < 1:
        raise AudioError(UNREADABLE_AUDIO, f"{name}: header has sample rate {info.samplerate}, {info.channels} channels")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


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
    return info if info is not None else _soundfile_info(path, path)


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


def read_info(
    location: str,
    *,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> AudioInfo:
    """Header facts of a local path or an http(s) URL (downloaded, bounded by time and size)."""
    if not is_url(location):
        return read_file_info(location)
    body = fetch_url(location, timeout_s=timeout_s, retries=retries, max_bytes=max_bytes)
    info = parse_wav_header(body[:HEADER_BYTES], len(body))
    return info if info is not None else _soundfile_info(io.BytesIO(body), location)


def load_audio(
    location: str,
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
) -> np.ndarray:
    """Samples of a local file or URL as a 1-D float32 array: channels averaged, resampled to `sample_rate`."""
    import numpy as np
    import soundfile

    if is_url(location):
        source: str | io.BytesIO = io.BytesIO(fetch_url(location, timeout_s=timeout_s, retries=retries))
    else:
        if not os.path.exists(location):
            raise AudioError(FILE_MISSING, f"{location}: no such file")
        source = location
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(UNREADABLE_AUDIO, f"{location}: not readable as audio ({error})") from None
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate and len(mono):
        import torch
        import torchaudio.functional

        resampled = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sample_rate)
        mono = resampled.numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)
