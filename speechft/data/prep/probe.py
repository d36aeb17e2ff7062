"""Stage 2, probe: the audio header facts of every candidate, `AudioInfo | Rejection` per utterance.

Headers are read in the background (worker processes for files, threads for URLs) so that
tokenisation runs at the same time: :class:`HeaderReads` starts them, :meth:`HeaderReads.results`
waits, and :func:`per_utterance` turns the facts of each location into each utterance's outcome.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from speechft.data import audio
from speechft.data.audio import AudioError, AudioInfo
from speechft.data.prep.candidates import Candidate
from speechft.data.prep.options import ProgressCallback
from speechft.data.prep.reasons import Rejection


class Unreadable(NamedTuple):
    """Why a location's audio could not be read: a reject reason and the detail."""

    reason: str
    detail: str


Probed = AudioInfo | Unreadable


@contextlib.contextmanager
def worker_pool(jobs: int, *, fresh: bool = False) -> Iterator[Any]:
    """Worker processes: forked (start in milliseconds) for header reads, which use no threads.

    `fresh`: workers that decode and resample audio start from a clean interpreter (forkserver),
    because torch's thread pools deadlock in a child forked from a parent that already used them.
    """
    methods = multiprocessing.get_all_start_methods()
    preferred = "forkserver" if fresh else "fork"
    pool = multiprocessing.get_context(preferred if preferred in methods else None).Pool(jobs)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def chunk_size(count: int, jobs: int) -> int:
    # Chunks big enough that dispatch costs little, small enough that progress moves and the
    # workers finish together.
    return max(64, min(2000, count // (jobs * 8) + 1))


def wants_pool(locations: Sequence[str], jobs: int) -> bool:
    """Whether reading these headers is worth starting worker processes for."""
    local_count = sum(1 for location in locations if not audio.is_url(location))
    return jobs > 1 and local_count >= 4 * chunk_size(local_count, jobs)


def probe_files(paths: Sequence[str]) -> list[Probed]:
    """Worker: header facts, or why not, for each local path."""
    results: list[Probed] = []
    for path in paths:
        try:
            results.append(audio.read_file_info(path))
        except AudioError as error:
            results.append(Unreadable(error.reason, error.detail))
    return results


def probe_url(location: str, timeout_s: float, retries: int) -> Probed:
    try:
        return audio.read_info(location, timeout_s=timeout_s, retries=retries)
    except AudioError as error:
        return Unreadable(error.reason, error.detail)


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class HeaderReads:
    """Header reads under way; :meth:`results` waits and returns them in the order of `locations`."""

    def __init__(self, locations: Sequence[str], pool: Any, jobs: int, timeout_s: float, retries: int, progress: ProgressCallback) -> None:
        self.locations = locations
        self.progress = progress
        self.local = [index for index, location in enumerate(locations) if not audio.is_url(location)]
        self.remote = [index for index, location in enumerate(locations) if audio.is_url(location)]
        local_paths = [locations[index] for index in self.local]
        self.chunk_size = chunk_size(len(local_paths), jobs)
        self.pending_local: Iterator[list[Probed]] | None = None
        if pool is not None and len(local_paths) >= 4 * self.chunk_size:
            self.pending_local = pool.imap(probe_files, _chunks(local_paths, self.chunk_size))
        self.threads: ThreadPoolExecutor | None = None
        self.pending_remote: list[Future[Probed]] = []
        if self.remote:
            self.threads = ThreadPoolExecutor(max_workers=min(32, max(4, 4 * jobs)))
            self.pending_remote = [self.threads.submit(probe_url, locations[index], timeout_s, retries) for index in self.remote]

    def results(self) -> list[Probed]:
        out: list[Probed | None] = [None] * len(self.locations)
        try:
            done = self._collect_local(out)
            for index, future in zip(self.remote, self.pending_remote):
                out[index] = future.result()
                done += 1
                self.progress("audio", done, len(self.locations))
        finally:
            self.close()
        missing = [self.locations[index] for index, result in enumerate(out) if result is None]
        if missing:
            raise RuntimeError(f"no header result for {missing[0]}; this is a bug in speechft")
        return out  # type: ignore[return-value]

    def _collect_local(self, out: list[Probed | None]) -> int:
        if self.pending_local is not None:
            chunks: Iterable[list[Probed]] = self.pending_local
        else:  # too few files for the workers: read them here, in chunks for the progress display
            local_paths = [self.locations[index] for index in self.local]
            chunks = (probe_files(chunk) for chunk in _chunks(local_paths, self.chunk_size))
        position = 0
        for chunk_results in chunks:
            for result in chunk_results:
                out[self.local[position]] = result
                position += 1
            self.progress("audio", position, len(self.locations))
        return position

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=True, cancel_futures=True)
            self.threads = None


def per_utterance(candidates: Sequence[Candidate], probed: dict[str, Probed]) -> list[AudioInfo | Rejection]:
    """Each candidate's header facts (its recording's, with segments) or why its audio is unusable."""
    outcomes: list[AudioInfo | Rejection] = []
    for candidate in candidates:
        result = probed[candidate.location]
        if isinstance(result, Unreadable):
            detail = result.detail if candidate.segment is None else f"recording {candidate.segment.recording}: {result.detail}"
            outcomes.append(Rejection(candidate.key, result.reason, detail))
        else:
            outcomes.append(result)
    return outcomes
