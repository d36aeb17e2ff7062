"""What `speechft train` does with its options: choose the profile, load the config, run, report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechft import console
from speechft.data.manifest import TrainSource, hours_of
from speechft.errors import TrainingError, UsageError
from speechft.profiles import PROFILE_ALIASES, PROFILES, profile_for_hours, profiles_dir, shipped_profile
from speechft.train.config import load_config


def resolve_profile(profile: str, train: Sequence[TrainSource]) -> tuple[Path, str, str]:
    """(YAML path, profile name for reports, why) for `auto`, a shipped profile or its alias, or a user YAML path."""
    if profile == "auto":
        hours = hours_of([source.path for source in train])
        name, why = profile_for_hours(hours)
        return profiles_dir() / f"{name}.yaml", name, f"--profile auto: {why} (from speech_length in the train jsonl)"
    name = shipped_profile(profile)
    if name is not None:
        shown = name if name == profile else f"{name} (alias {profile})"
        return profiles_dir() / f"{name}.yaml", shown, f"--profile {profile}"
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path, path.stem, f"--profile {path}"
    aliases = ", ".join(f"{alias} = {target}" for alias, target in PROFILE_ALIASES.items())
    raise UsageError(f"--profile {profile!r}: use auto, {', '.join(PROFILES)} (aliases: {aliases}) or a path to a YAML file")


def split_arguments(train: Sequence[str], extra: Sequence[str]) -> tuple[list[TrainSource], list[str]]:
    """Trailing arguments: `key=value` overrides, anything else one more `--train` file."""
    overrides = [item for item in extra if "=" in item and not item.endswith(".jsonl")]
    files = [*train, *(item for item in extra if item not in overrides)]
    if not files:
        raise UsageError("no training data: pass --train data/train.jsonl (more files may follow, optionally FILE:WEIGHT)")
    return [TrainSource.parse(item) for item in files], overrides


@dataclass(frozen=True)
class Launch:
    """`--nproc-per-node` and friends: how many ranks to start on this node, and where rank 0 listens."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port (one node only)

    @property
    def starts_workers(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes > 1


def worker_arguments(
    *,
    profile: str,
    model_dir: Path,
    train_files: Sequence[str],
    extra: Sequence[str],
    output_dir: Path,
    val: Path | None,
    resume: str,
    allow_missing: bool,
    show_progress: bool,
    output_dir_checked: bool = False,
) -> list[str]:
    """The `speechft train ...` arguments each rank runs with: the user's, minus the launcher's.

    `output_dir_checked` tells the ranks the launcher has already checked the output directory for
    an earlier run (and cleared it for --overwrite): a rank must not take the files another rank
    has just written for an earlier run's."""
    arguments = ["train", "--profile", profile, "--model-dir", str(model_dir), "--output-dir", str(output_dir), "--resume", resume]
    if output_dir_checked:
        arguments.append("--output-dir-checked")
    for item in train_files:
        arguments += ["--train", item]
    if val is not None:
        arguments += ["--val", str(val)]
    if allow_missing:
        arguments.append("--allow-missing")
    if not show_progress:
        arguments.append("--quiet")
    return [*arguments, *extra]


def launch_ranks(launch: Launch, arguments: Sequence[str], output_dir: Path, user_command: str) -> int:
    """Start torchrun with `launch`'s ranks on this node and wait; 0 when they finished or stopped cleanly."""
    from speechft.train import distributed
    from speechft.train.loop import STOPPED_FILE

    if launch.nnodes > 1 and launch.master_port == 0:
        raise UsageError("--master-port is required with --nnodes > 1 (every node must use the same one)")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise UsageError(f"--node-rank {launch.node_rank}: must be in 0..{launch.nnodes - 1}")
    port = launch.master_port or distributed.free_port()
    command = distributed.torchrun_command(
        arguments,
        nproc_per_node=launch.nproc_per_node,
        nnodes=launch.nnodes,
        node_rank=launch.node_rank,
        master_addr=launch.master_addr,
        master_port=port,
    )
    console.err.print(f"starting {launch.nproc_per_node} rank(s) on node {launch.node_rank} of {launch.nnodes}: {distributed.quote_command(command)}", soft_wrap=True)
    started = time.time()
    code = distributed.launch(command, user_command)
    stopped = output_dir / STOPPED_FILE
    if stopped.exists() and stopped.stat().st_mtime >= started:
        # torchrun reports the signal as a failure even when every rank checkpointed and exited 0.
        record = json.loads(stopped.read_text(encoding="utf-8"))
        console.err.print(f"stopped by {record['signal']} after step {record['step']}; checkpoint {record['checkpoint']}")
        console.out.print(f"resume with: {record['resume']}", soft_wrap=True)
        return 0
    if code != 0:
        raise TrainingError(f"torchrun exited with code {code}; the messages above name the rank that failed")
    return 0


def train(
    *,
    profile: str,
    model_dir: Path,
    train_files: Sequence[str],
    extra: Sequence[str],
    output_dir: Path | None,
    val: Path | None,
    dry_run: bool,
    resume: str,
    allow_missing: bool,
    show_progress: bool,
    launch: Launch | None = None,
    command: str = "speechft train",
    overwrite: bool = False,
    output_dir_checked: bool = False,
) -> object:
    """Resolve options into a TrainRequest and run it; print the outcome on the consoles.

    With `launch` asking for several ranks (and not already one of them), start torchrun with
    the same arguments instead; every rank then comes back here and joins the run. The output
    directory is checked for an earlier run once, here, before any rank starts.
    """
    from speechft.train import distributed, faults
    from speechft.train.loop import DryRunReport, TrainRequest, run_training

    sources, overrides = split_arguments(train_files, extra)
    if output_dir is None and not dry_run:
        raise UsageError("--output-dir is required (where checkpoints and the fine-tuned model go)")
    path, name, why = resolve_profile(profile, sources)
    is_worker = distributed.launched_by_torchrun()
    if not is_worker or int(os.environ.get("RANK", "0")) == 0:
        console.err.print(f"profile {name}: {why}")
    if launch is not None and launch.starts_workers and not dry_run and not is_worker:
        config = load_config(path, overrides)  # a config error is reported once, here, not by every rank
        run_dir = output_dir or Path(".")
        if not output_dir_checked:
            # Only the first node deletes (--overwrite); every node refuses an earlier run alike.
            notes = faults.prepare_output_dir(
                run_dir, resume=resume, overwrite=overwrite, model_dir=model_dir, clear=launch.node_rank == 0, keep=(config.data.url_cache,)
            )
            for note in notes:
                console.err.print(note, soft_wrap=True, markup=False)
        arguments = worker_arguments(
            profile=str(path), model_dir=model_dir, train_files=train_files, extra=extra, output_dir=run_dir,
            val=val, resume=resume, allow_missing=allow_missing, show_progress=show_progress, output_dir_checked=True,
        )
        return launch_ranks(launch, arguments, run_dir, command)
    config = load_config(path, overrides)
    request = TrainRequest(
        model_dir=model_dir,
        train=tuple(sources),
        output_dir=output_dir or Path("."),
        config=config,
        val=val,
        profile=name,
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        output_dir_checked=output_dir_checked,
        allow_missing=allow_missing,
        show_progress=show_progress,
        command=os.environ.get(distributed.COMMAND_VARIABLE, command),
    )
    result = run_training(request)
    if is_worker and int(os.environ.get("RANK", "0")) != 0:
        return result  # rank 0 reports for everyone
    if not isinstance(result, DryRunReport) and result.stopped_by is not None:
        console.err.print(f"stopped by {result.stopped_by} after step {result.steps}; checkpoint written in {result.output_dir / 'checkpoints'}")
        console.out.print(f"resume with: {result.resume_command}", soft_wrap=True)
        return result
    if not isinstance(result, DryRunReport):
        cer = "n/a" if result.best_val_cer is None else f"{result.best_val_cer:.2%}"
        console.out.print(
            f"trained {result.steps} steps in {result.seconds:.0f} s; model.pt from {', '.join(result.selected)} "
            f"(val CER {cer}); skipped samples: {result.skipped_samples}"
        )
        console.out.print(f"model directory: {result.output_dir}  (use it as --model-dir for `speechft decode`)")
    return result
