"""Split long audio into segments of at most `max_seconds` at low-energy points.

The model was trained on utterances of up to ~30 s; longer inputs make it repeat itself
(UPSTREAM.md §4). Upstream uses a VAD model for this; a frame-energy search needs no download and
is enough to avoid cutting through a word in read or conversational speech.
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010


def frame_energy_db(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log energy of 25 ms frames every 10 ms (one value per hop; the tail frame is zero-padded)."""
    frame = int(round(FRAME_SECONDS * sample_rate))
    hop = int(round(HOP_SECONDS * sample_rate))
    count = max(1, 1 + (len(waveform) - 1) // hop)
    padded = np.zeros(hop * (count - 1) + frame, dtype=np.float64)
    padded[: len(waveform)] = waveform
    # Sum of squares per frame via a cumulative sum: O(n), no strided copies of the signal.
    cumulative = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = np.arange(count) * hop
    energy = cumulative[starts + frame] - cumulative[starts]
    return 10.0 * np.log10(energy / frame + 1e-10)


def split_points(
    waveform: np.ndarray,
    sample_rate: int,
    max_seconds: float = 30.0,
    search_seconds: float = 10.0,
    smooth_seconds: float = 0.2,
) -> list[tuple[int, int]]:
    """Return `(start, end)` sample ranges covering the waveform, each at most `max_seconds` long.

    Each cut is placed at the quietest point (energy smoothed over `smooth_seconds`) within the
    last `search_seconds` before the limit, so segments stay long and cuts fall in pauses.
    Audio no longer than `max_seconds` is one segment.
    """
    total = len(waveform)
    limit = int(max_seconds * sample_rate)
    if total <= limit:
        return [(0, total)]
    hop = int(round(HOP_SECONDS * sample_rate))
    energy = frame_energy_db(waveform, sample_rate)
    width = max(1, int(round(smooth_seconds / HOP_SECONDS)))
    smoothed = np.convolve(energy, np.ones(width) / width, mode="same")
    search = int(min(search_seconds, max_seconds / 2) * sample_rate)

    ranges: list[tuple[int, int]] = []
    start = 0
    while total - start > limit:
        low = (start + limit - search) // hop
        high = (start + limit) // hop  # a cut at frame `high` still keeps the segment within limit
        window = smoothed[low : high + 1]
        cut = min((low + int(np.argmin(window))) * hop, start + limit)
        ranges.append((start, cut))
        start = cut
    ranges.append((start, total))
    return ranges
