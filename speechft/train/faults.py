"""What a long run must survive: a stop request, an output directory that cannot hold it.

- :class:`GracefulStop` turns SIGINT/SIGTERM into a flag the loop reads between steps, so the
  current step finishes and a checkpoint is written before the process exits.
- :func:`check_output_dir` and :func:`check_free_space` fail before training starts, not hours
  later at the first checkpoint.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from speechft.errors import TrainingError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Within `with GracefulStop() as stop:` SIGINT/SIGTERM set `stop.signal_name` instead of
    killing the process; the previous handlers come back on exit. A second Ctrl-C still stops
    at the next step, not at once: half-written optimizer state is worse than waiting."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(number).name

    def __enter__(self) -> GracefulStop:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def resume_command(command: str) -> str:
    """The user's command with `--resume auto` (replacing any other --resume)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return f"{command} --resume auto"
    kept: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word == "--resume":
            skip_next = True
            continue
        if word.startswith("--resume="):
            continue
        kept.append(word)
    return shlex.join([*kept, "--resume", "auto"])


def check_output_dir(output_dir: Path) -> None:
    """Create `output_dir` and prove a file can be written there, or say what is wrong."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainingError(f"--output-dir {output_dir}: cannot create it ({error.strerror or error})") from None
    probe = output_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"speechft")
        probe.unlink()
    except OSError as error:
        raise TrainingError(f"--output-dir {output_dir}: not writable ({error.strerror or error}); choose another directory or fix its permissions") from None


def checkpoint_bytes(trainable_parameters: int) -> int:
    """One checkpoint on disk: fp32 weights plus AdamW's two fp32 moments of what trains."""
    return trainable_parameters * (4 + 8)


def check_free_space(output_dir: Path, needed_bytes: int) -> None:
    """Refuse to start when the output directory's disk cannot hold the checkpoints and model."""
    free = shutil.disk_usage(output_dir).free
    if free < needed_bytes:
        raise TrainingError(
            f"--output-dir {output_dir}: about {_gigabytes(needed_bytes)} needed for checkpoints and the model, "
            f"{_gigabytes(free)} free; free space, lower checkpoint.keep_last, or pick another disk"
        )


def _gigabytes(count: int) -> str:
    return f"{count / 1024**3:.2f} GiB"

