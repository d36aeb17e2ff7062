"""Fine-tune Fun-ASR-Nano from the official model directory with a data-size profile.

Profiles: small-data (adaptor only, < 1000 h), medium-data (encoder + adaptor, < 5000 h), large-data (everything, > 10000 h), llm-lora (adaptor + LoRA adapters on the LLM), auto (chosen from the hours in the train jsonl), or a YAML path.

Trailing KEY=VALUE arguments override the profile (e.g. optim.lr=1e-4 max_epochs=3). More train files may follow --train, each optionally weighted as FILE:WEIGHT: `--train domain.jsonl general.jsonl:0.2` replays a fifth of the general data each epoch.

The output directory is a model directory: use it as --model-dir for `speechft decode`.

Several GPUs: --nproc-per-node N starts torchrun with N ranks (add --nnodes, --node-rank, --master-addr, --master-port on each node of a multi-node run); a process already started by torchrun joins its run. Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and prints the command that resumes it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from speechft import console
from speechft.cli import options
from speechft.cli.common import guarded
from speechft.errors import TrainingError

if TYPE_CHECKING:
    from speechft.train.plan import DryRunReport


@guarded
def command(
    model_dir: options.ModelDir,
    train: Annotated[list[str], typer.Option("--train", help="Training jsonl from `speechft prep`; FILE:WEIGHT to weight it; repeatable.")] = [],  # noqa: B006
    extra: Annotated[list[str] | None, typer.Argument(help="More train files, and KEY=VALUE config overrides.", show_default=False)] = None,
    profile: Annotated[
        str,
        typer.Option(
            "--profile", help="small-data (alias adaptor-only) | medium-data (alias encoder+adaptor) | large-data (alias full) | llm-lora | auto | path.yaml"
        ),
    ] = "auto",
    val: Annotated[
        Path | None, typer.Option("--val", help="Validation jsonl (default: a slice of the training data held out by key hash and not trained on).")
    ] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Run directory; becomes the fine-tuned model directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config, parameters, batches and memory estimate; train nothing.")] = False,
    resume: Annotated[str, typer.Option("--resume", help="off | auto (latest checkpoint in --output-dir) | path to a checkpoint folder.")] = "off",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Delete an earlier run's checkpoints, logs and model in --output-dir first (other files stay).")
    ] = False,
    allow_missing: options.AllowMissing = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    nproc_per_node: Annotated[int, typer.Option("--nproc-per-node", min=1, help="Ranks (GPUs) to start on this node through torchrun.")] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", min=1, help="Nodes taking part (run the same command on each).")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", min=0, help="This node's index, 0 .. nnodes-1.")] = 0,
    master_addr: Annotated[str, typer.Option("--master-addr", help="Address of node 0, where rank 0 listens.")] = "127.0.0.1",
    master_port: Annotated[int, typer.Option("--master-port", min=0, max=65535, help="Port on node 0 (0: any free port; one node only).")] = 0,
) -> None:
    from speechft.train.entry import Launch
    from speechft.train.entry import train as run
    from speechft.train.plan import DryRunReport

    outcome = run(
        profile=profile,
        model_dir=model_dir,
        train_files=train,
        extra=extra or [],
        output_dir=output_dir,
        val=val,
        dry_run=dry_run,
        resume=resume,
        allow_missing=allow_missing,
        show_progress=not quiet,
        launch=Launch(nproc_per_node, nnodes, node_rank, master_addr, master_port),
        command=shlex.join(["speechft", *sys.argv[1:]]),
        overwrite=overwrite,
    )
    if isinstance(outcome, DryRunReport):
        render_dry_run(outcome)
        if outcome.problem:
            raise TrainingError(outcome.problem)


def render_dry_run(report: DryRunReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console.out
    out.print("[bold]resolved config[/]")
    out.print(report.config_yaml.rstrip(), markup=False)
    table = Table(title="parameters per module", show_lines=False)
    table.add_column("module")
    table.add_column("trainable", justify="right")
    table.add_column("frozen", justify="right")
    for name in ("encoder", "adaptor", "llm", "lora", "ctc", "other"):
        if name in report.modules:
            count = report.modules[name]
            table.add_row(name, f"{count.trainable:,}", f"{count.frozen:,}")
    total_trainable = sum(c.trainable for c in report.modules.values())
    total_frozen = sum(c.frozen for c in report.modules.values())
    table.add_row("[bold]total[/]", f"{total_trainable:,}", f"{total_frozen:,}")
    out.print(table)
    out.print(
        f"training utterances: {report.utterances} ({report.hours:.2f} h), skipped lines: {report.skipped}, validation utterances: {report.val_utterances}"
    )
    out.print(f"token budget: {report.token_budget} padded speech_length + text_length per batch ({report.token_budget_reason})", soft_wrap=True)
    out.print(
        f"batches per epoch: {report.batches_per_epoch}, optimizer steps per epoch: {report.steps_per_epoch}, total steps: {report.total_steps}, warmup steps: {report.warmup_steps}"
    )
    out.print(f"device: {report.device}, precision: {report.precision}")
    out.print(f"peak memory estimate: {format_bytes(report.peak_memory_bytes)} ({report.memory_note})")
    out.print(f"with several ranks, strategy: {report.strategy} ({report.strategy_reason})", markup=False)
    out.print("dry run: nothing was trained")
    out.print(escape(report.validation))


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"
