"""Long-audio segmentation at low-energy points."""

from __future__ import annotations

import numpy as np
import pytest

from speechft.decode.segment import frame_energy_db, split_points

RATE = 16000


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=int(seconds * RATE)).astype(np.float32)


def test_short_audio_is_one_segment():
    audio = _noise(29.9)
    assert split_points(audio, RATE) == [(0, len(audio))]


def test_cuts_fall_in_pauses_and_cover_everything():
    audio = _noise(75)
    for pause in (22.0, 50.0):
        audio[int(pause * RATE) : int((pause + 0.5) * RATE)] *= 1e-3
    ranges = split_points(audio, RATE, max_seconds=30)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))
    assert all(end - start <= 30 * RATE for start, end in ranges)
    cuts = [end / RATE for _, end in ranges[:-1]]
    assert cuts[0] == pytest.approx(22.25, abs=0.3)
    assert cuts[1] == pytest.approx(50.25, abs=0.3)


def test_no_pause_still_bounded():
    audio = _noise(95, seed=1)
    ranges = split_points(audio, RATE, max_seconds=30)
    assert all(0 < end - start <= 30 * RATE for start, end in ranges)
    assert sum(end - start for start, end in ranges) == len(audio)


def test_energy_is_lower_in_silence():
    audio = _noise(2)
    audio[RATE:] = 0
    energy = frame_energy_db(audio, RATE)
    assert energy[:90].min() > energy[110:].max() + 40
