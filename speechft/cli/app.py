"""The `speechft` command: prep -> train -> decode -> normalize -> score."""

from __future__ import annotations

from typing import Annotated

import typer

from speechft import __version__
from speechft.cli import decode, normalize, prep, score, train
from speechft.cli.common import state

app = typer.Typer(
    name="speechft",
    help="Fine-tune Fun-ASR-Nano on your own speech corpus: prep, train, decode, normalize, score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"speechft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    state.verbose = verbose


app.command("prep", help=prep.__doc__)(prep.command)
app.command("train", help=train.__doc__)(train.command)
app.command("decode", help=decode.__doc__)(decode.command)
app.command("normalize", help=normalize.__doc__)(normalize.command)
app.command("score", help=score.__doc__)(score.command)


def main() -> None:
    app(prog_name="speechft")
