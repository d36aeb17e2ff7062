"""Training config schema and profiles: fast, no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech_fixtures import chatml_line, write_jsonl
from speechft.data.manifest import TrainSource
from speechft.errors import ConfigError
from speechft.profiles import profile_for_hours, profiles_dir
from speechft.train.config import TrainConfig, dump_config, load_config
from speechft.train.entry import resolve_profile

CONFIGS = sorted(profiles_dir().glob("*.yaml"))


def test_profiles_exist() -> None:
    assert {p.stem for p in CONFIGS} >= {"small-data", "medium-data", "large-data"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_starts_with_its_command(path: Path) -> None:
    config = load_config(path)
    first = path.read_text(encoding="utf-8").splitlines()[:2]
    assert first[0].startswith(f"# speechft train --profile {path.stem} ")
    assert "hours" in first[1]
    assert config == load_config(path)  # frozen, deterministic


def test_profiles_train_the_guides_modules() -> None:
    assert load_config(profiles_dir() / "small-data.yaml").trainable == ("adaptor",)
    assert load_config(profiles_dir() / "medium-data.yaml").trainable == ("encoder", "adaptor")
    assert load_config(profiles_dir() / "large-data.yaml").trainable == ("encoder", "adaptor", "llm")


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  lrate: 1e-4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mine\.yaml: optim\.lrate: unknown key"):
        load_config(path)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("max_epochs: three\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mine\.yaml: max_epochs: expected an integer"):
        load_config(path)
    path.write_text("trainable: [decoder]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mine\.yaml: trainable\[0\]: must be one of encoder, adaptor, llm, got .decoder."):
        load_config(path)


def test_scientific_notation_is_a_float(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  lr: 1e-4\n", encoding="utf-8")  # PyYAML reads this as a string
    assert load_config(path).optim.lr == pytest.approx(1e-4)


def test_overrides_use_the_same_loader() -> None:
    config = load_config(profiles_dir() / "small-data.yaml", ["optim.lr=3e-5", "trainable=encoder,adaptor", "data.dither=0", "checkpoint.select=avg:2"])
    assert config.optim.lr == pytest.approx(3e-5)
    assert config.trainable == ("encoder", "adaptor")
    assert config.data.dither == 0.0
    assert config.checkpoint.average_count == 2
    for bad, message in [("optim.lr=fast", "optim.lr: expected a number"), ("nope=1", "nope: unknown key"), ("max_epochs", "expected key=value"), ("checkpoint.select=median", "best, last or avg:K")]:
        with pytest.raises(ConfigError, match=message):
            load_config(profiles_dir() / "small-data.yaml", [bad])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(profiles_dir() / "medium-data.yaml", ["max_steps=7"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config


def test_profile_auto_by_hours(tmp_path: Path) -> None:
    assert profile_for_hours(10)[0] == "small-data"
    assert profile_for_hours(2000)[0] == "medium-data"
    assert profile_for_hours(7000)[0] == "medium-data"
    assert profile_for_hours(20000)[0] == "large-data"
    lines = [chatml_line(f"k{i}", tmp_path / "a.wav", "x") | {"speech_length": 360_000} for i in range(20)]  # 20 h
    train = write_jsonl(tmp_path / "train.jsonl", lines)
    path, name, why = resolve_profile("auto", [TrainSource(train)])
    assert name == "small-data" and path.exists() and "20.0 h" in why


def test_default_config_is_valid() -> None:
    assert TrainConfig().optim.grad_clip == 5.0
