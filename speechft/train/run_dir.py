"""The run directory: the files a run writes there, and the request every rank starts from.

The launcher resolves a run once (profile and overrides, training sources and weights, validation
source, resume point, its decision about an earlier run in the directory) and writes it here:
`train_config.yaml`, the config, usable again as a --profile, and `run.json`, everything else.
Every rank trains from these two files alone, so the ranks of a run agree by construction and the
directory records what was run. `train_summary.json` is the other end: what the run achieved.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from speechft.data.manifest import TrainSource
from speechft.errors import InputError
from speechft.io import atomic
from speechft.train.checkpoint import resume_point
from speechft.train.config import TrainConfig, dump_config, load_config

RESOLVED_CONFIG = "train_config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
STOPPED_FILE = "stopped.json"
SKIPPED_FILE = "skipped.jsonl"
SUMMARY_FILE = "train_summary.json"
CURVES_FILE = "curves.png"
TENSORBOARD_FOLDER = "tensorboard"


@dataclass(frozen=True)
class TrainRequest:
    """Everything one run needs; built by the CLI from its options and the profile."""

    model_dir: Path
    train: tuple[TrainSource, ...]
    output_dir: Path
    config: TrainConfig
    val: Path | None = None
    profile: str = "custom"
    dry_run: bool = False
    resume: str = "off"  # off | auto | path to a checkpoint folder
    overwrite: bool = False  # delete an earlier run's files in output_dir first
    output_dir_checked: bool = False  # output_dir was checked (and cleared) and this request written there
    allow_missing: bool = False
    show_progress: bool = True
    command: str = "speechft train"  # as the user typed it, for the resume hint


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_loss: float | None
    best_val_cer: float | None
    selected: list[str]
    skipped_samples: int
    seconds: float
    stopped_by: str | None = None  # the signal that stopped the run early, if one did
    resume_command: str | None = None
    first_epoch_samples: int = 0
    validation: str = ""  # where the validation utterances came from, in words
    end_reason: str = ""  # why training ended: max_epochs, max_steps or early stopping


def settled(request: TrainRequest) -> TrainRequest:
    """The request as ranks run it: `--resume auto` resolved to a checkpoint folder (or off), the
    output directory decided. Called after the earlier-run check, before any rank writes."""
    point = resume_point(request.output_dir, request.resume)
    return replace(request, resume=str(point) if point is not None else "off", output_dir_checked=True)


def write_run(request: TrainRequest) -> None:
    """`train_config.yaml` and `run.json` in the (existing) output directory, each written atomically."""
    directory = request.output_dir
    header = f"# resolved training config (profile: {request.profile}); rerun with --profile {directory / RESOLVED_CONFIG}\n"
    atomic.write_text(directory / RESOLVED_CONFIG, header + dump_config(request.config), durable=False)
    record: dict[str, Any] = {
        "model_dir": str(request.model_dir),
        "train": [{"path": str(source.path), "weight": source.weight} for source in request.train],
        "val": None if request.val is None else str(request.val),
        "profile": request.profile,
        "resume": request.resume,
        "overwrite": request.overwrite,
        "output_dir_checked": request.output_dir_checked,
        "allow_missing": request.allow_missing,
        "show_progress": request.show_progress,
        "command": request.command,
    }
    atomic.write_text(directory / RUN_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n", durable=False)


def read_run(run_dir: Path, *, wait_s: float = 0.0) -> TrainRequest:
    """The request a launcher wrote into `run_dir` (which is the output directory).

    `wait_s` gives a file written on another node time to appear: network filesystems may show a
    new file only after their attribute cache expires."""
    path = run_dir / RUN_FILE
    deadline = time.monotonic() + wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{path}: not found; `speechft train` writes it before starting the ranks, and --output-dir must be on a filesystem every node sees"
        ) from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable ({error}); start the run again with `speechft train`") from None
    try:
        return TrainRequest(
            model_dir=Path(record["model_dir"]),
            train=tuple(TrainSource(Path(source["path"]), float(source["weight"])) for source in record["train"]),
            output_dir=run_dir,
            config=load_config(run_dir / RESOLVED_CONFIG),
            val=None if record["val"] is None else Path(record["val"]),
            profile=str(record["profile"]),
            resume=str(record["resume"]),
            overwrite=bool(record["overwrite"]),
            output_dir_checked=bool(record["output_dir_checked"]),
            allow_missing=bool(record["allow_missing"]),
            show_progress=bool(record["show_progress"]),
            command=str(record["command"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: missing or malformed field ({error!r}); start the run again with `speechft train`") from None


def write_summary(result: TrainResult) -> None:
    """train_summary.json: the run's outcome, machine-readable."""
    record = {**asdict(result), "output_dir": str(result.output_dir)}
    (result.output_dir / SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
