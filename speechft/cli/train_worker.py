"""One rank of a run `speechft train --nproc-per-node N` launched: `python -m speechft.cli.train_worker RUN_DIR`.

torchrun starts this in every rank. It reads the run directory the launcher wrote (the resolved
config and run.json) and nothing else, trains, and exits with the code `speechft train` would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechft.cli.common import guarded


@guarded
def work(run_dir: Annotated[Path, typer.Argument(help="The run directory (--output-dir) the launcher wrote.", show_default=False)]) -> None:
    from speechft.train.entry import train_from_run_dir

    train_from_run_dir(run_dir)


if __name__ == "__main__":
    typer.run(work)
