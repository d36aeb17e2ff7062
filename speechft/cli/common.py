"""What every command shares: the error-to-exit-code mapping and the `--verbose` switch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from speechft import console
from speechft.errors import SpeechftError

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    verbose = False


state = _State()


def guarded(function: F) -> F:
    """Run a command body; domain errors become one red line on stderr and their exit code.

    Usage errors exit 2, everything else a user can fix exits 1; `speechft --verbose CMD` adds
    the traceback.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except SpeechftError as error:
            if state.verbose:
                console.err.print_exception()
            console.err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            console.err.print("[red]interrupted[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:  # anything else is a bug in speechft: say so, keep it short
            if state.verbose:
                console.err.print_exception()
            console.err.print(
                f"[red]internal error:[/] {type(error).__name__}: {escape(str(error))} (rerun with `speechft --verbose ...` for the traceback)",
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
