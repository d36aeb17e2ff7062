"""Shared fixtures: the CLI runner and one tiny model directory (read-only for every test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded tiny Fun-ASR-Nano directory in the official layout; tests copy it to change it."""
    from speechft.testing.tiny_model import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=0)
