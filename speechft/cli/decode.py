"""Batched decoding with the prompt the model was trained with. (Not available yet.)"""

from __future__ import annotations

import typer

from speechft.cli.common import guarded
from speechft.errors import NotAvailableError


@guarded
def command(
    args: list[str] = typer.Argument(None, hidden=True),
) -> None:
    raise NotAvailableError("`speechft decode` is not available in this version yet")
