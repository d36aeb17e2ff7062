"""What a long run must survive, and what must stop it rather than let it go silently wrong.

- :class:`GracefulStop` turns SIGINT/SIGTERM into a flag the loop reads between steps, so the
  current step finishes and a checkpoint is written before the process exits;
  :func:`resume_command` is the command that continues such a run.
- Skipped data: every unusable line or sample is recorded in `skipped.jsonl` with its reason
  (:func:`record_skips`, :func:`note_skips`), and a run that skipped more than
  `data.max_skip_fraction` of its utterances stops (:func:`skip_problem` words why).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
from collections.abc import Collection, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.markup import escape

from speechft import console
from speechft.data.manifest import Skip
from speechft.errors import TrainingError
from speechft.train import distributed as dist_tools
from speechft.train.checkpoint import list_checkpoints
from speechft.train.corpus import TrainData
from speechft.train.run_dir import SKIPPED_FILE
from speechft.train.state import Run, TrainState

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
    """The user's command with `--resume auto` (replacing any other --resume; an --overwrite goes,
    or it would delete the run being resumed)."""
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
        if word.startswith("--resume=") or word == "--overwrite":
            continue
        kept.append(word)
    return shlex.join([*kept, "--resume", "auto"])


def reason_kind(reason: str) -> str:
    """A skip reason without its particulars (file names, numbers), for counting by kind."""
    head = re.split(r"[:(]", reason, maxsplit=1)[0]
    return re.sub(r"[0-9]+(\.[0-9]+)?", "N", head).strip() or reason


def skip_problem(
    skips: Sequence[tuple[str, str, str]],
    total: int,
    max_fraction: float,
    *,
    full_list: Path | None = None,
    nothing_trained: str = "",
    checkpointed: bool = False,
) -> str | None:
    """None while the skipped utterances are few enough; else the message that stops the run.

    `skips` are (key, reason, where) records, possibly several per key (a file that fails every
    epoch); utterances are counted once, against `total` training utterances. `nothing_trained`
    (e.g. "epoch 1 made no optimizer step") stops the run whatever the fraction; `checkpointed`
    says the run can be continued, so the message names --resume auto and --overwrite.
    """
    first: dict[str, tuple[str, str]] = {}
    for key, reason, where in skips:
        first.setdefault(key, (reason, where))
    count = len(first)
    if not nothing_trained and (count == 0 or (count < total and count <= max_fraction * total)):
        return None
    if nothing_trained:
        head = f"{nothing_trained}: {count} of {total} training utterances were skipped"
    elif count >= total:
        head = f"every one of the {total} training utterances was skipped"
    else:
        head = f"{count} of {total} training utterances ({count / max(total, 1):.1%}) were skipped, more than data.max_skip_fraction {max_fraction:g}"
    by_kind: dict[str, list[tuple[str, str, str]]] = {}
    for key, (reason, where) in first.items():
        by_kind.setdefault(reason_kind(reason), []).append((key, reason, where))
    lines = [head + ". By reason:"]
    for kind, items in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        examples = ", ".join(f"{key} ({where})" if where else key for key, _, where in items[:3])
        more = ", ..." if len(items) > 3 else ""
        lines.append(f"  {len(items)} x {kind}: {examples}{more}; first reason in full: {items[0][1]}")
    where_listed = f"Every skipped line and its reason: {full_list}. " if full_list is not None else ""
    if checkpointed:
        ways = "Fix or remove those lines and rerun with --overwrite, or raise data.max_skip_fraction and rerun with --resume auto to train on the rest"
    else:
        ways = "Fix or remove those lines, or raise data.max_skip_fraction to train on the rest"
    lines.append(f"{where_listed}{ways}; no model.pt was written.")
    return "\n".join(lines)


def read_skip_records(path: Path) -> list[tuple[str, str, str]]:
    """(key, reason, where) of the training data's skips in a run's skipped.jsonl (--val lines left out)."""
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("split", "train") == "train":
            records.append((str(record.get("key", "")), str(record.get("reason", "")), str(record.get("where", ""))))
    return records


def record_skips(output_dir: Path, skips: Sequence[Skip], step: int, split: str = "train") -> None:
    """Append to skipped.jsonl; `split` is "val" for lines of the --val file (not counted against training)."""
    if not skips:
        return
    with (output_dir / SKIPPED_FILE).open("a", encoding="utf-8") as handle:
        for skip in skips:
            handle.write(json.dumps({"key": skip.key, "reason": skip.reason, "where": skip.where, "step": step, "split": split}, ensure_ascii=False) + "\n")


def note_skips(world: dist_tools.World, output_dir: Path, seen: Collection[str], skips: list[Skip], any_rank_skipped: bool, step: int) -> list[Skip]:
    """This step's skipped samples from every rank that are not in `seen`: recorded and shown once
    by rank 0, which gets them back (other ranks get an empty list)."""
    if not any_rank_skipped:
        return []
    everyone = [skip for rank_skips in dist_tools.gather_to_main(world, skips) for skip in rank_skips]
    if not world.is_main:
        return []
    new = [skip for skip in everyone if skip.key not in seen]
    record_skips(output_dir, new, step)
    for skip in new:
        console.err.print(f"[yellow]skipped[/] {escape(skip.key)}: {escape(skip.reason)}", highlight=False)
    return new


def check_skips_before_training(output_dir: Path, world: dist_tools.World, data: TrainData, max_fraction: float, *, fresh: bool) -> None:
    """Record what reading the data skipped (a fresh run only; a resumed one has it already), and
    stop if that is already too much; every rank reads the same files, so all agree."""
    if world.is_main and fresh:
        record_skips(output_dir, data.skipped, 0)
        record_skips(output_dir, data.val_skipped, 0, split="val")
    records = [(skip.key, skip.reason, skip.where) for skip in data.skipped]
    problem = skip_problem(records, data.corpus_utterances, max_fraction, full_list=output_dir / SKIPPED_FILE)
    if problem:
        raise TrainingError(problem)


def stop_if_mostly_skipped(run: Run, state: TrainState, *, nothing_trained: str = "") -> None:
    """During training: rank 0 judges the skipped utterances in skipped.jsonl (all ranks' skips reach
    it); every rank stops together."""
    world, output_dir = run.world, run.request.output_dir
    problem = None
    if world.is_main and (nothing_trained or state.skipped_samples):
        problem = skip_problem(
            read_skip_records(output_dir / SKIPPED_FILE),
            run.data.corpus_utterances,
            run.config.data.max_skip_fraction,
            full_list=output_dir / SKIPPED_FILE,
            nothing_trained=nothing_trained,
            checkpointed=bool(list_checkpoints(output_dir)),
        )
    (stopping,) = dist_tools.sum_across(world, [1 if problem else 0])
    if stopping:
        raise TrainingError(problem or f"rank {world.rank}: stopping with rank 0, which found too many training utterances skipped (its message lists them)")
