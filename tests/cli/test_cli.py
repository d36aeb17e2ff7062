"""The command-line foundation: entry points, version, error mapping, light imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import typer

from speechft import __version__
from speechft.cli.app import app
from speechft.cli.common import guarded, state
from speechft.errors import InputError, UsageError

HEAVY_MODULES = ("torch", "transformers", "funasr", "torchaudio")


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"speechft {__version__}"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "speechft", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", ["prep", "train", "decode", "normalize", "score"])
def test_every_command_has_help(runner, command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _imported_after(argv: list[str]) -> set[str]:
    """Run the CLI in a fresh interpreter and list which heavy modules it imported."""
    probe = textwrap.dedent(
        f"""
        import sys
        from speechft.cli.app import app
        try:
            app({argv!r}, prog_name="speechft")
        except SystemExit:
            pass
        heavy = {HEAVY_MODULES!r}
        print("HEAVY:" + " ".join(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    marker = [line for line in result.stderr.splitlines() if line.startswith("HEAVY:")]
    assert marker, result.stderr
    return set(marker[-1].removeprefix("HEAVY:").split())


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["normalize", "--help"], ["score", "--help"], ["prep", "--help"], ["train", "--help"], ["decode", "--help"]],
)
def test_help_imports_no_heavy_module(argv):
    assert _imported_after(argv) == set()


def test_normalize_and_score_import_no_heavy_module(tmp_path):
    ref = tmp_path / "ref.txt"
    hyp = tmp_path / "hyp.txt"
    ref.write_text("u1 今天 天气 很好\nu2 hello world\n", encoding="utf-8")
    hyp.write_text("u1 今天天气很好\nu2 hello word\n", encoding="utf-8")
    assert _imported_after(["normalize", str(ref), str(tmp_path / "norm.txt")]) == set()
    assert _imported_after(["score", str(ref), str(hyp)]) == set()


def test_domain_error_is_one_red_line_exit_1(runner):
    probe = typer.Typer()

    @probe.command()
    @guarded
    def fail() -> None:
        raise InputError("data/text:3: invalid UTF-8")

    result = runner.invoke(probe, [])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: data/text:3: invalid UTF-8"
    assert "Traceback" not in result.output


def test_usage_error_exits_2(runner):
    probe = typer.Typer()

    @probe.command()
    @guarded
    def fail() -> None:
        raise UsageError("--a and --b conflict")

    assert runner.invoke(probe, []).exit_code == 2


def test_unexpected_error_points_to_verbose(runner):
    probe = typer.Typer()

    @probe.command()
    @guarded
    def fail() -> None:
        raise RuntimeError("boom")

    result = runner.invoke(probe, [])
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "--verbose" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_shows_traceback(runner, monkeypatch):
    probe = typer.Typer()

    @probe.command()
    @guarded
    def fail() -> None:
        raise InputError("bad thing")

    monkeypatch.setattr(state, "verbose", True)
    result = runner.invoke(probe, [])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "bad thing" in result.stderr


def test_unknown_option_is_usage_error(runner):
    result = runner.invoke(app, ["score", "--no-such-option"])
    assert result.exit_code == 2
