"""speechft as an installed package: the profiles ship in the wheel, their aliases, every YAML file parses.

The slow test builds the wheel, installs it into a fresh virtual environment that sees this
environment's dependencies but not the source tree, and runs `prep` and a `train --dry-run`
from an unrelated working directory.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from speech_fixtures import write_tone

import speechft
from speechft.cli.app import app
from speechft.profiles import GUIDE_PROFILES, PROFILE_ALIASES, PROFILES, profiles_dir, shipped_profile
from speechft.train.config import load_config
from speechft.train.entry import resolve_profile

REPO = Path(__file__).resolve().parents[1]
# Folders of generated or third-party files, never part of the project's own YAML.
NOT_PROJECT = {"build", "dist", "demo-run", "out", "node_modules", "__pycache__"}


def _project_yaml_files() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name not in NOT_PROJECT and not name.endswith(".egg-info")]
        found += [Path(folder) / name for name in files if name.endswith((".yaml", ".yml"))]
    return sorted(found)


def _is_model_config(path: Path) -> bool:
    """A model directory's config.yaml (beside model.pt), as opposed to a training profile."""
    return path.name == "config.yaml" and (path.parent / "model.pt").exists()


YAML_FILES = _project_yaml_files()


def test_profiles_live_inside_the_package() -> None:
    folder = profiles_dir()
    assert folder.resolve().is_relative_to(Path(speechft.__file__).resolve().parent)
    assert sorted(path.stem for path in folder.glob("*.yaml")) == sorted(PROFILES)


@pytest.mark.parametrize(("alias", "name"), sorted(PROFILE_ALIASES.items()))
def test_aliases_resolve_to_the_same_files(alias: str, name: str) -> None:
    assert shipped_profile(alias) == shipped_profile(name) == name
    alias_path, alias_shown, alias_why = resolve_profile(alias, [])
    path, shown, _ = resolve_profile(name, [])
    assert alias_path == path and path.is_file()
    assert shown == name and alias_shown == f"{name} (alias {alias})"
    assert alias_why == f"--profile {alias}"
    assert load_config(alias_path) == load_config(path)
    # The profile's own header names its alias, so a reader of the file finds it too.
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any(f"--profile {alias}" in line for line in header), header


def test_every_profile_has_one_alias() -> None:
    assert sorted(PROFILE_ALIASES.values()) == sorted(GUIDE_PROFILES)
    assert shipped_profile("adaptor") is None and shipped_profile("small-data.yaml") is None


def test_unknown_profile_lists_names_and_aliases() -> None:
    from speechft.errors import UsageError

    with pytest.raises(UsageError, match=r"--profile 'huge'.*small-data.*adaptor-only = small-data.*full = large-data"):
        resolve_profile("huge", [])


def test_train_help_lists_the_aliases(runner) -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"[\s│]+", " ", result.output)
    for name, alias in (("small-data", "adaptor-only"), ("medium-data", "encoder+adaptor"), ("large-data", "full")):
        assert f"{name} (alias {alias})" in text, text


def test_the_repository_yaml_files_were_found() -> None:
    names = {path.relative_to(REPO).as_posix() for path in YAML_FILES}
    assert {f"speechft/profiles/{name}.yaml" for name in PROFILES} <= names
    assert "examples/tiny-nano/config.yaml" in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_yaml_file_in_the_repository_parses(path: Path) -> None:
    if _is_model_config(path):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and "model" in data, f"{path}: a model config.yaml names its model class"
        return
    config = load_config(path)
    assert config.trainable, f"{path}: a training profile trains at least one module"
    assert path.read_text(encoding="utf-8").startswith("# "), f"{path}: a shipped YAML starts with a comment giving the command that runs it"


def _build_wheel(destination: Path) -> Path:
    """Build from a copy of the sources so the shared checkout gets no build/ or egg-info."""
    source = destination / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", *(path.name for path in REPO.glob("LICEN[CS]E*"))):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "speechft", source / "speechft", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = destination / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("speechft-*.whl")
    return wheel


def _fresh_environment(directory: Path, wheel: Path) -> Path:
    """A venv with the wheel installed; this environment's packages are visible, the source tree is not.

    The .pth line adds the base site-packages as a plain path, so the `.pth` files in it (the
    editable install's hook into the checkout among them) are not run.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=120)
    python = directory / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (Path(purelib) / "base_environment.pth").write_text("".join(f"{path}\n" for path in site.getsitepackages()), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


@pytest.mark.slow
def test_installed_wheel_runs_a_profile_from_another_directory(tiny_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    wheel = _build_wheel(tmp_path / "build")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in PROFILES:
            member = f"speechft/profiles/{name}.yaml"
            assert member in names, f"{wheel.name} lacks {member}: check [tool.setuptools.package-data] in pyproject.toml"
            assert archive.read(member) == (profiles_dir() / f"{name}.yaml").read_bytes()

    environment = _fresh_environment(tmp_path / "env", wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    run_env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    def installed(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(arguments), cwd=work, env=run_env, capture_output=True, text=True, timeout=600, check=False)

    probe = installed(
        str(environment / "bin" / "python"),
        "-c",
        "import speechft; from speechft.profiles import profiles_dir; print(speechft.__file__); print(profiles_dir())",
    )
    assert probe.returncode == 0, probe.stderr
    package, folder = (Path(line) for line in probe.stdout.split())
    for path in (package, folder):
        assert path.is_relative_to(environment) and not path.is_relative_to(REPO), path

    for index in range(4):
        write_tone(work / f"u{index}.wav", 0.8 + 0.1 * index, 220.0 + 110.0 * index, seed=index)
    (work / "wav.scp").write_text("".join(f"u{index} u{index}.wav\n" for index in range(4)), encoding="utf-8")
    (work / "text").write_text("u0 one two\nu1 three\nu2 four five six\nu3 seven\n", encoding="utf-8")
    command = str(environment / "bin" / "speechft")
    prep = installed(command, "prep", "--scp", "wav.scp", "--text", "text", "--out", "data/train.jsonl", "--model-dir", str(tiny_dir), "--jobs", "1")
    assert prep.returncode == 0, prep.stdout + prep.stderr
    assert (work / "data" / "train.jsonl").is_file()

    train = installed(command, "train", "--profile", "small-data", "--dry-run", "--model-dir", str(tiny_dir), "--train", "data/train.jsonl")
    assert train.returncode == 0, train.stdout + train.stderr
    output = train.stdout + train.stderr
    assert "profile small-data: --profile small-data" in output
    for expected in ("resolved config", "trainable:", "adaptor", "lr: 0.0002", "dry run: nothing was trained"):
        assert expected in output, f"{expected!r} missing from:\n{output}"
    assert not any(work.glob("checkpoints")), "a dry run writes no checkpoint"


@pytest.mark.slow
def test_alias_run_reports_the_resolved_profile(tiny_dir: Path, tmp_path: Path, runner) -> None:
    from speech_fixtures import make_corpus, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 4))
    result = runner.invoke(
        app, ["train", "--profile", "encoder+adaptor", "--dry-run", "--model-dir", str(tiny_dir), "--train", str(train), "data.num_workers=0"]
    )
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", result.output)
    assert "profile medium-data (alias encoder+adaptor): --profile encoder+adaptor" in text
    assert "lr: 5.0e-05" in text or "lr: 5e-05" in text, text
