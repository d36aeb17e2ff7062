"""What a run reports while it trains: metrics.jsonl, TensorBoard, the progress bar, the curves.

Only rank 0 writes and draws (:class:`RunLog` does nothing visible elsewhere). `metrics.jsonl`
gets one JSON object per line, flushed each time (tail -f friendly): a `data` record first, then
`train` records every `log_every` steps and a `validation` record per validation; TensorBoard event
files under `<run>/tensorboard/` mirror the numbers, and `curves.png` plots them at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from speechft import console
from speechft.train.corpus import TrainData
from speechft.train.run_dir import CURVES_FILE, METRICS_FILE, SKIPPED_FILE, STOPPED_FILE, TENSORBOARD_FOLDER
from speechft.train.state import Run, TrainState


@dataclass
class StepStats:
    """What one optimizer step reports: loss, audio seconds, samples and stopping ranks summed over ranks."""

    loss: float
    grad_norm: float
    lr: float
    audio_seconds: float
    padding_fraction: float  # this rank's
    skipped: bool = False  # non-finite loss or gradient: no update was made
    samples: int = 0
    stopping_ranks: int = 0  # ranks asked to stop (a signal) by the end of the step
    loss_scale: float | None = None  # fp16: the loss scale the step used


class MetricsWriter:
    """Appends records to metrics.jsonl and mirrors their numbers to TensorBoard."""

    def __init__(self, path: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = path
        self.handle = path.open("a", encoding="utf-8")
        self.board = SummaryWriter(log_dir=str(path.parent / TENSORBOARD_FOLDER))

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        kind, step = record.get("kind"), record.get("step")
        if kind in ("train", "validation") and isinstance(step, int):
            for name, value in record.items():
                if name not in ("kind", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"{kind}/{name}", value, step)
            self.board.flush()

    def close(self) -> None:
        self.handle.close()
        self.board.close()


def announce_start(run: Run, state: TrainState, resume_from: Path | None) -> None:
    """Rank 0, before the first step: what was skipped, what validates, where a resume starts."""
    output, data = run.request.output_dir, run.data
    (output / STOPPED_FILE).unlink(missing_ok=True)
    if data.skipped and resume_from is None:
        skipped = f"skipped {state.skipped_samples} of {data.corpus_utterances} training utterances before training"
        console.err.print(f"[yellow]{skipped}[/] (reasons in {output / SKIPPED_FILE})")
    console.err.print(escape(data.validation), soft_wrap=True)
    if resume_from is not None:
        console.err.print(f"resumed from {resume_from} at step {state.step} (epoch {state.epoch + 1}, batch {state.batch_in_epoch})")
    if run.world.distributed:
        console.err.print(f"{run.world.world_size} ranks, {run.world.strategy}, {run.world.device.type}")


class RunLog:
    """The run's account while `fit` runs: a context manager around the progress bar and metrics file."""

    def __init__(self, output_dir: Path, *, main: bool, show_progress: bool, log_every: int) -> None:
        self.main = main
        self.metrics = MetricsWriter(output_dir / METRICS_FILE) if main else None
        self.progress = console.progress("epoch {task.fields[epoch]}", "{task.fields[stats]}", elapsed=True, enabled=show_progress and main, keep=True)
        self.log_every = log_every
        self.last_loss: float | None = None
        self.window_seconds = 0.0
        self.window_start = time.monotonic()
        self.task: Any = None

    def __enter__(self) -> RunLog:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.progress.__exit__(*exc)
        finally:
            if self.metrics is not None:
                self.metrics.close()

    def start(self, data: TrainData, *, total_steps: int, step: int, epoch: int, skipped_utterances: int) -> None:
        """The `data` record (what this run trains and validates on) and the progress bar's start."""
        self.task = self.progress.add_task("train", total=total_steps, completed=step, epoch=epoch + 1, stats="")
        if self.metrics is not None:
            self.metrics.write(
                {
                    "kind": "data",
                    "step": step,
                    "train_utterances": len(data.dataset),
                    "corpus_utterances": data.corpus_utterances,
                    "skipped_utterances": skipped_utterances,
                    "val_utterances": len(data.val_samples),
                    "val_source": data.val_source,
                    "validation": data.validation,
                }
            )

    def step(self, step: int, epoch: int, loss: float, stats: StepStats, seconds: float, *, skipped: int, nonfinite: int) -> None:
        """One optimizer step done: `loss` and `seconds` of audio summed over ranks."""
        self.last_loss = loss
        self.window_seconds += seconds
        rate = self.window_seconds / max(time.monotonic() - self.window_start, 1e-9)
        shown = f"loss {loss:.3f}  lr {stats.lr:.2e}  {rate:.0f} audio-s/s  pad {stats.padding_fraction:.0%}"
        self.progress.update(self.task, completed=step, epoch=epoch + 1, stats=shown)
        if self.metrics is not None and (step % self.log_every == 0 or step == 1):
            self.metrics.write(
                {
                    "kind": "train",
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": stats.lr,
                    "grad_norm": stats.grad_norm,
                    "audio_seconds_per_second": rate,
                    "padding_fraction": stats.padding_fraction,
                    "elapsed_s": time.monotonic() - self.window_start,
                    "skipped_samples": skipped,
                    "nonfinite_steps": nonfinite,
                    "peak_memory_bytes": _peak_memory_bytes(),
                }
            )

    def validation(self, step: int, epoch: int, loss: float, cer: float, data: TrainData) -> None:
        if self.metrics is not None:
            self.metrics.write(
                {
                    "kind": "validation",
                    "step": step,
                    "epoch": epoch,
                    "val_loss": loss,
                    "val_cer": cer,
                    "val_utterances": len(data.val_samples),
                    "val_from_train": data.val_from_train,
                    "val_source": data.val_source,
                }
            )

    def epoch_done(self, epoch: int, step: int, loss: float, cer: float) -> None:
        if self.main:
            console.err.print(f"epoch {epoch}: step {step}, val loss {loss:.3f}, val CER {cer:.2%}")


def _peak_memory_bytes() -> int | None:
    """The most CUDA memory this rank's tensors have held (the allocator's own count: no device sync); None without CUDA."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def write_curves(output_dir: Path) -> Path:
    """Train/validation loss and validation CER from metrics.jsonl, as `curves.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (output_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"], r["val_cer"]) for r in records if r.get("kind") == "validation"]
    figure, (loss_axis, cer_axis) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        loss_axis.plot(*zip(*train), label="train loss")
    if val:
        loss_axis.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val loss")
        cer_axis.plot([v[0] for v in val], [100 * v[2] for v in val], "o-", label="val CER %")
    loss_axis.set_xlabel("step")
    cer_axis.set_xlabel("step")
    for axis in (loss_axis, cer_axis):
        if axis.lines:  # a run without validation has no CER curve to label
            axis.legend()
    path = output_dir / CURVES_FILE
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
