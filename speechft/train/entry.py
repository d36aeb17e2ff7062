"""What `speechft train` does with its options: choose the profile, resolve the config once, run, report.

One process (or a rank torchrun started with `speechft train ...`) trains here. With
`--nproc-per-node`/`--nnodes`, this process is the launcher instead: it checks the output
directory, writes the resolved run into it (:mod:`speechft.train.run_dir`) and starts torchrun with
one worker per rank (`python -m speechft.cli.train_worker RUN_DIR`), which reads nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechft import console
from speechft.data.manifest import TrainSource, hours_of
from speechft.errors import TrainingError, UsageError
from speechft.profiles import PROFILE_ALIASES, PROFILES, profile_for_hours, profiles_dir, shipped_profile
from speechft.train.config import load_config
from speechft.train.run_dir import STOPPED_FILE, TrainRequest, TrainResult, read_run, settled, write_run

WORKER_MODULE = "speechft.cli.train_worker"
# How long a worker on another node waits for the launcher's run.json to be visible on the shared filesystem.
RUN_FILE_WAIT_S = 30.0


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
) -> object:
    """Resolve the options into a TrainRequest and run it: a dry run's report (for the CLI to
    render), the result of training here, or torchrun's exit code when launching ranks."""
    from speechft.train import distributed
    from speechft.train.plan import dry_run as plan_dry_run

    sources, overrides = split_arguments(train_files, extra)
    if output_dir is None and not dry_run:
        raise UsageError("--output-dir is required (where checkpoints and the fine-tuned model go)")
    path, name, why = resolve_profile(profile, sources)
    joining = distributed.launched_by_torchrun()  # one rank of a run torchrun started with `speechft train`
    if not joining:
        console.err.print(f"profile {name}: {why}")
    request = TrainRequest(
        model_dir=model_dir,
        train=tuple(sources),
        output_dir=output_dir or Path("."),
        config=load_config(path, overrides),  # a config error is reported here, before any rank starts
        val=val,
        profile=name,
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        allow_missing=allow_missing,
        show_progress=show_progress,
        command=command,
    )
    if dry_run:
        return plan_dry_run(request)
    if launch is not None and launch.starts_workers and not joining:
        return launch_ranks(launch, request)
    return train_on_this_rank(request, note=f"profile {name}: {why}" if joining else None)


def launch_ranks(launch: Launch, request: TrainRequest) -> int:
    """Check the output directory, write the run into it, start torchrun with `launch`'s ranks on
    this node and wait; 0 when they finished or stopped cleanly."""
    from speechft.train import distributed, output_dir

    if launch.nnodes > 1 and launch.master_port == 0:
        raise UsageError("--master-port is required with --nnodes > 1 (every node must use the same one)")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise UsageError(f"--node-rank {launch.node_rank}: must be in 0..{launch.nnodes - 1}")
    run_dir = request.output_dir
    # Only the first node deletes (--overwrite) and writes the run; every node refuses an earlier run alike.
    first_node = launch.node_rank == 0
    notes = output_dir.prepare_output_dir(
        run_dir, resume=request.resume, overwrite=request.overwrite, model_dir=request.model_dir, clear=first_node, keep=(request.config.data.url_cache,)
    )
    for note in notes:
        console.err.print(note, soft_wrap=True, markup=False)
    if first_node:
        output_dir.check_output_dir(run_dir)
        write_run(settled(request))
    port = launch.master_port or distributed.free_port()
    command = distributed.torchrun_command(
        ["-m", WORKER_MODULE, str(run_dir)],
        nproc_per_node=launch.nproc_per_node,
        nnodes=launch.nnodes,
        node_rank=launch.node_rank,
        master_addr=launch.master_addr,
        master_port=port,
    )
    console.err.print(
        f"starting {launch.nproc_per_node} rank(s) on node {launch.node_rank} of {launch.nnodes}: {distributed.quote_command(command)}", soft_wrap=True
    )
    started = time.time()
    code = distributed.launch(command)
    stopped = run_dir / STOPPED_FILE
    if stopped.exists() and stopped.stat().st_mtime >= started:
        # torchrun reports the signal as a failure even when every rank checkpointed and exited 0.
        record = json.loads(stopped.read_text(encoding="utf-8"))
        console.err.print(f"stopped by {record['signal']} after step {record['step']}; checkpoint {record['checkpoint']}")
        console.out.print(f"resume with: {record['resume']}", soft_wrap=True)
        return 0
    if code != 0:
        raise TrainingError(f"torchrun exited with code {code}; the messages above name the rank that failed")
    return 0


def train_from_run_dir(run_dir: Path) -> TrainResult:
    """One worker of a launched run: everything comes from the run directory the launcher wrote."""
    return train_on_this_rank(read_run(run_dir, wait_s=RUN_FILE_WAIT_S))


def train_on_this_rank(request: TrainRequest, note: str | None = None) -> TrainResult:
    """Join (or be) the run's world, train, and report on rank 0; `note` is printed by rank 0 first."""
    from speechft.train import distributed
    from speechft.train.loop import run_training

    settings = request.config.distributed
    with distributed.world_session(request.config.device, strategy=settings.strategy, timeout_s=settings.timeout_s) as world:
        if note and world.is_main:
            console.err.print(note)
        result = run_training(request, world)
    if world.is_main:
        report(result)
    return result


def report(result: TrainResult) -> None:
    """The outcome, for the user: how to continue a stopped run, or what was trained and where it is."""
    if result.stopped_by is not None:
        console.err.print(f"stopped by {result.stopped_by} after step {result.steps}; checkpoint written in {result.output_dir / 'checkpoints'}")
        console.out.print(f"resume with: {result.resume_command}", soft_wrap=True)
        return
    cer = "n/a" if result.best_val_cer is None else f"{result.best_val_cer:.2%}"
    console.out.print(
        f"trained {result.steps} steps in {result.seconds:.0f} s; model.pt from {', '.join(result.selected)} "
        f"(val CER {cer}); skipped samples: {result.skipped_samples}"
    )
    if result.end_reason:
        console.out.print(f"ended: {result.end_reason}")
    console.out.print(f"model directory: {result.output_dir}  (use it as --model-dir for `speechft decode`)")
