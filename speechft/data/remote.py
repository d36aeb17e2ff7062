"""Audio behind http(s) URLs: downloads bounded by time, retries and size, and the per-run cache.

With a cache directory each URL is downloaded once into a file named by a hash of the URL (written
atomically, so loader workers and ranks sharing the directory never see half a file). Failures
raise :class:`FetchError`; the audio loader reports them as the `url_unreachable` reject reason.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from speechft.errors import InputError

DEFAULT_URL_TIMEOUT_S = 30.0
DEFAULT_URL_RETRIES = 2
DEFAULT_URL_MAX_BYTES = 1 << 30


class FetchError(InputError):
    """A URL that could not be downloaded; the message names the URL and what went wrong."""


def fetch_url(
    url: str,
    *,
    timeout_s: float = DEFAULT_URL_TIMEOUT_S,
    retries: int = DEFAULT_URL_RETRIES,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> bytes:
    """Download `url` with a per-attempt timeout, `retries` extra attempts and a size cap.

    A 4xx answer is final (retrying will not help); timeouts, connection errors and 5xx are
    retried with a short growing pause. Raises :class:`FetchError`.
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
            raise FetchError(f"{url}: larger than {max_bytes} bytes; download it and list the file")
        return body
    tries = f" after {retries + 1} attempts" if retries else ""
    raise FetchError(f"{url}: {last_problem}{tries}")


def url_cache_path(url: str, cache_dir: str | os.PathLike[str]) -> str:
    """Where `url` is kept in `cache_dir`: a hash of the URL, plus its suffix so formats stay recognisable."""
    suffix = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
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


def url_cache_dir(output_dir: Path, setting: str) -> Path | None:
    """Where a run keeps downloaded URL audio: `data.url_cache` relative to the output directory
    (absolute paths as they are, to share one cache between runs); None when it is empty."""
    if not setting:
        return None
    return output_dir / setting
