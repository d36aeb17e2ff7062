"""Audio loaded ahead of the decoder in threads, in input order, within a budget of seconds held in memory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from speechft.data.audio import MODEL_SAMPLE_RATE
from speechft.decode.inputs import DecodeItem
from speechft.errors import InputError

AudioLoader = Callable[[str], np.ndarray]
AudioMeasure = Callable[[str], "float | None"]


class Prefetch:
    """Loads items' audio in worker threads, in input order, within a budget of seconds.

    An item is admitted (its load may start) when the seconds held (loading, or loaded and not yet
    released by the consumer) plus its own length, read beforehand by `measure`, fit the budget,
    or when nothing is held. An item whose length `measure` cannot tell (a URL) is admitted while
    the held seconds are under the budget and no other such item is loading, and is counted once
    loaded. So at most `budget + one item` seconds are ever held. The consumer `take`s loaded items
    in input order and `release`s each one when it is done with its audio.
    """

    def __init__(self, items: Sequence[DecodeItem], load: AudioLoader, measure: AudioMeasure, workers: int, budget_s: float) -> None:
        self.items = items
        self.load = load
        self.measure = measure
        self.budget_s = budget_s
        self.lock = threading.Condition()
        self.turn = 0  # the next position to admit
        self.turn_waits = False  # the item at `turn` is measured and waits for room
        self.loading = 0  # admitted, not yet loaded
        self.unknown_loading = False
        self.held_items = 0  # admitted, not yet released
        self.held_s = 0.0
        self.peak_s = 0.0
        self.done: dict[int, tuple[np.ndarray | str | BaseException, float]] = {}
        self.cursor = 0  # the next position to hand to the consumer
        self.closed = False
        self.pool = ThreadPoolExecutor(max(1, workers))
        for position in range(len(items)):
            self.pool.submit(self._work, position)

    def _room_for(self, seconds: float | None) -> bool:
        if seconds is None:
            return not self.unknown_loading and (self.held_items == 0 or self.held_s < self.budget_s)
        return self.held_items == 0 or self.held_s + seconds <= self.budget_s

    def _work(self, position: int) -> None:
        item = self.items[position]
        try:
            seconds = self.measure(item.source)
        except (InputError, OSError, RuntimeError, ValueError):
            seconds = None
        with self.lock:
            while not self.closed and (self.turn != position or not self._room_for(seconds)):
                if self.turn == position:
                    self.turn_waits = True
                self.lock.wait()
            if self.closed:
                return
            self.turn_waits = False
            self.turn += 1
            self.loading += 1
            self.held_items += 1
            self.unknown_loading = self.unknown_loading or seconds is None
            self.held_s += seconds or 0.0
            self.peak_s = max(self.peak_s, self.held_s)
            self.lock.notify_all()
        result: np.ndarray | str | BaseException
        try:
            result = _load(self.load, item)
        except Exception as error:  # handed to the consumer, which raises it
            result = error
        actual = len(result) / MODEL_SAMPLE_RATE if isinstance(result, np.ndarray) else 0.0
        with self.lock:
            self.loading -= 1
            if seconds is None:
                self.unknown_loading = False
            self.held_s += actual - (seconds or 0.0)
            self.peak_s = max(self.peak_s, self.held_s)
            self.done[position] = (result, actual)
            self.lock.notify_all()

    def take(self, wanted: int) -> list[tuple[DecodeItem, np.ndarray | str, float]]:
        """The next up to `wanted` loaded items in input order (at least one while any are left).

        Fewer come back only at the end of the input, or when the budget keeps the next item from
        loading until these are released.
        """
        with self.lock:
            while True:
                ready = 0
                while ready < wanted and self.cursor + ready in self.done:
                    ready += 1
                finished = self.cursor + ready >= len(self.items)
                starved = self.loading == 0 and self.turn_waits and self.turn == self.cursor + ready
                if ready >= wanted or finished or (ready and starved):
                    break
                self.lock.wait()
            taken = []
            for position in range(self.cursor, self.cursor + ready):
                result, seconds = self.done.pop(position)
                if isinstance(result, BaseException):
                    raise result
                taken.append((self.items[position], result, seconds))
            self.cursor += ready
            return taken

    def release(self, seconds: float) -> None:
        """The consumer holds one item's audio no longer."""
        with self.lock:
            self.held_items -= 1
            self.held_s -= seconds
            self.lock.notify_all()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _load(load_audio: AudioLoader, item: DecodeItem) -> np.ndarray | str:
    """The waveform, or the reason it cannot be decoded (a string)."""
    try:
        waveform = load_audio(item.source)
    except InputError as error:
        return str(error)
    except (OSError, RuntimeError, ValueError) as error:
        return f"{item.source}: cannot load audio ({error})"
    if len(waveform) == 0:
        return f"{item.source}: empty audio"
    return waveform
