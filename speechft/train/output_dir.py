"""The output directory: usable before training starts, not holding an earlier run, seen by every rank.

- :func:`check_output_dir` and :func:`check_free_space` fail before training starts, not hours
  later at the first checkpoint.
- :func:`prepare_output_dir` refuses an output directory that holds an earlier run (its
  checkpoints would be ranked and averaged with the new ones) unless asked to resume it or to
  overwrite it, and :func:`check_shared_output_dir` proves every rank sees the same directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from speechft import console
from speechft.errors import SpeechftError, TrainingError, UsageError
from speechft.io import atomic
from speechft.model.build import CONFIG_FILE, CONFIGURATION_FILE, LLM_FOLDER, WEIGHTS_FILE
from speechft.train import distributed as dist_tools
from speechft.train.checkpoint import CHECKPOINTS, list_checkpoints
from speechft.train.config import CheckpointConfig
from speechft.train.export import EXTRA_MODEL_FILES, PROMPT_FILE
from speechft.train.run_dir import (
    CURVES_FILE,
    METRICS_FILE,
    RESOLVED_CONFIG,
    RUN_FILE,
    SKIPPED_FILE,
    STOPPED_FILE,
    SUMMARY_FILE,
    TENSORBOARD_FOLDER,
    TrainRequest,
)

SHARED_MARKER = ".speechft-shared-check"
# Logs that describe one run: a new run must not append to an earlier one's.
RUN_LOGS = (METRICS_FILE, SKIPPED_FILE, STOPPED_FILE, SUMMARY_FILE, CURVES_FILE, TENSORBOARD_FOLDER)
# The resolved config and run.json are not listed: every run rewrites them first, and the config may be the --profile in use.
RUN_OUTPUTS = (CHECKPOINTS, *RUN_LOGS, WEIGHTS_FILE, CONFIG_FILE, CONFIGURATION_FILE, LLM_FOLDER, PROMPT_FILE, *EXTRA_MODEL_FILES)


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


def check_room_for_run(output_dir: Path, model: Any, trainable_parameters: int, settings: CheckpointConfig) -> None:
    """Free space for the checkpoints the run keeps at most, one being written, and the exported model."""
    model_bytes = sum(parameter.numel() * 4 for parameter in model.parameters())
    copies = settings.keep_last + settings.average_count + 1
    check_free_space(output_dir, copies * checkpoint_bytes(trainable_parameters) + model_bytes)


def earlier_run(output_dir: Path) -> list[str]:
    """What `output_dir` holds of an earlier run that checkpointed or finished (names for a message)."""
    found = []
    checkpoints = [path for path in (output_dir / CHECKPOINTS).glob("step-*") if path.is_dir()]
    if checkpoints:
        found.append(f"{CHECKPOINTS}/ with {len(checkpoints)} checkpoint{'s' if len(checkpoints) > 1 else ''}")
    if (output_dir / WEIGHTS_FILE).exists():
        found.append(WEIGHTS_FILE)
    return found


def _resumes_in_place(output_dir: Path, resume: str) -> bool:
    """True when `resume` continues a run whose checkpoints are in `output_dir`."""
    if resume == "auto":
        return bool(list_checkpoints(output_dir))
    if resume == "off":
        return False
    return (output_dir / CHECKPOINTS).resolve() in Path(resume).resolve().parents


def check_previous_run(output_dir: Path, *, resume: str, overwrite: bool, model_dir: Path | None = None) -> None:
    """Refuse to start a new run where an earlier one left checkpoints or a model (read-only)."""
    if model_dir is not None and output_dir.resolve() == model_dir.resolve():
        raise UsageError(f"--output-dir {output_dir} is the --model-dir: the fine-tuned model would replace the base one; choose another directory")
    if overwrite and resume != "off":
        if resume == "auto" or _resumes_in_place(output_dir, resume):
            raise UsageError(f"--overwrite deletes the run in {output_dir} that --resume {resume} would continue; pass one of them, not both")
        return
    if overwrite or _resumes_in_place(output_dir, resume):
        return
    found = earlier_run(output_dir)
    if found:
        raise UsageError(
            f"--output-dir {output_dir} already holds an earlier run ({', '.join(found)}); a new run there would rank and "
            "average its checkpoints with the old ones. Continue that run with --resume auto, or start afresh in a new "
            "--output-dir (or add --overwrite to delete the earlier run's files first)."
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def clear_previous_run(output_dir: Path, keep: Sequence[str] = ()) -> list[str]:
    """--overwrite: delete what speechft wrote in `output_dir` except `keep` (caches); leave
    everything else. Returns notes for the user."""
    if not output_dir.is_dir():
        return []
    entries = sorted(output_dir.iterdir())
    ours = [path for path in entries if path.name in RUN_OUTPUTS or path.name.startswith((atomic.TEMP_PREFIX, atomic.OLD_PREFIX, ".write-test-"))]
    for path in ours:
        _remove(path)
    notes = [f"--overwrite: removed {', '.join(path.name for path in ours)} from {output_dir}"] if ours else []
    others = [path.name for path in entries if path not in ours and path.name not in (RESOLVED_CONFIG, RUN_FILE, SHARED_MARKER, *keep)]
    if others:
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        notes.append(f"--overwrite: kept {len(others)} file(s) speechft did not write: {', '.join(others[:5])}{more}")
    return notes


def clear_run_logs(output_dir: Path) -> list[str]:
    """A fresh run starts its own logs: those of an earlier run that wrote no checkpoint go."""
    stale = [output_dir / name for name in RUN_LOGS if (output_dir / name).exists()]
    for path in stale:
        _remove(path)
    if not stale:
        return []
    return [f"removed the logs of an earlier run that wrote no checkpoint from {output_dir} ({', '.join(path.name for path in stale)})"]


def prepare_output_dir(
    output_dir: Path, *, resume: str, overwrite: bool, model_dir: Path | None = None, clear: bool = True, keep: Sequence[str] = ()
) -> list[str]:
    """Before anything of this run is written: refuse an earlier run's directory, or clear it as asked.

    With `clear` False (every node but the first of a multi-node launch) only the check runs, so
    one node alone deletes. `keep` names entries --overwrite leaves (the URL audio cache).
    Returns notes for the user.
    """
    check_previous_run(output_dir, resume=resume, overwrite=overwrite, model_dir=model_dir)
    if not clear:
        return []
    if overwrite:
        return clear_previous_run(output_dir, keep)
    if _resumes_in_place(output_dir, resume):
        return []
    return clear_run_logs(output_dir)


def prepare_output_dir_on_ranks(request: TrainRequest, world: dist_tools.World) -> None:
    """Rank 0 refuses an earlier run's output directory (or clears it as asked) before any rank writes there."""
    error: SpeechftError | None = None
    if world.is_main:
        try:
            notes = prepare_output_dir(
                request.output_dir, resume=request.resume, overwrite=request.overwrite, model_dir=request.model_dir, keep=(request.config.data.url_cache,)
            )
            for note in notes:
                console.err.print(escape(note), soft_wrap=True)
        except SpeechftError as caught:
            error = caught
    (refused,) = dist_tools.sum_across(world, [1 if error else 0])
    if error is not None:
        raise error
    if refused:
        raise UsageError(f"rank {world.rank}: rank 0 refused --output-dir {request.output_dir} (its message says why)")


def check_shared_output_dir(directory: Path, world: Any, *, wait_s: float = 5.0) -> None:
    """Prove every rank sees the files rank 0 writes in `directory`, or stop every rank.

    Rank 0 writes a random token into a marker file and sends the token to every rank through the
    process group; each rank must read the same token from the file within `wait_s`. A rank on a
    node whose `directory` is a local disk finds no marker (or a stale one) and names its host:
    checkpoints written by rank 0 would be missing there when resuming.
    """
    if not world.distributed:
        return
    marker = directory / SHARED_MARKER
    problem = None
    token = ""
    if world.is_main:
        token = secrets.token_hex(16)
        try:
            marker.write_text(token, encoding="utf-8")
        except OSError as error:
            problem = f"rank 0 on host {socket.gethostname()}: cannot write {marker} ({error.strerror or error})"
    # The broadcast also orders the ranks: none looks before rank 0 has written.
    token = dist_tools.broadcast_from_main(world, token)
    if not world.is_main and token:
        problem = _look_for_marker(marker, token, wait_s, world.rank)
    try:
        problems = [found for found in dist_tools.gather_to_main(world, problem) if found]
        (failing,) = dist_tools.sum_across(world, [1 if problem or not token else 0])
    finally:
        if world.is_main:
            marker.unlink(missing_ok=True)
    if not failing:
        return
    if problem is not None:
        raise TrainingError(problem)
    if world.is_main:
        raise TrainingError("; ".join(problems))
    raise TrainingError(f"rank {world.rank}: stopping, another rank cannot see --output-dir {directory} (rank 0's message names it)")


def _look_for_marker(marker: Path, token: str, wait_s: float, rank: int) -> str | None:
    """None once `marker` holds `token`; otherwise, after `wait_s`, what is wrong."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            found: str | None = marker.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            found = None
        except OSError as error:
            found = f"unreadable ({error.strerror or error})"
        if found == token:
            return None
        if time.monotonic() >= deadline:
            break
        # Network filesystems may show a new file only after their attribute cache expires.
        time.sleep(0.2)
    seen = "it is not there" if found is None else "it holds another run's token" if not found.startswith("unreadable") else f"it is {found}"
    return (
        f"rank {rank} on host {socket.gethostname()}: the marker rank 0 wrote in --output-dir {marker.parent} is not visible "
        f"here after {wait_s:g} s ({seen}): --output-dir must be on a filesystem every node sees (NFS, Lustre...), "
        "not a disk local to one node"
    )
