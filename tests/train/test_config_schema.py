"""The config schema: every field documented, enumerated fields checked once by the loader with the allowed values named."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from pathlib import Path

import pytest

from speechft.errors import ConfigError
from speechft.profiles import profiles_dir
from speechft.train import config as schema
from speechft.train.config import dump_config, load_config


def _undocumented(cls: type, prefix: str = "") -> list[str]:
    """Fields without a string literal right under them (the one-line doc a reader of the schema relies on)."""
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    documented = {
        node.target.id
        for node, following in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
    }
    missing = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[item.name]):
            missing += _undocumented(hints[item.name], f"{prefix}{item.name}.")
        elif item.name not in documented:
            missing.append(prefix + item.name)
    return missing


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = 1


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    """Documented."""
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_every_field_is_documented() -> None:
    assert _undocumented(_Outer) == ["inner.size"]
    assert _undocumented(schema.TrainConfig) == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("precision=fp8", r"precision: must be one of auto, bf16, fp16, fp32, got 'fp8'"),
        ("device=gpu", r"device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("schedule.decay=exponential", r"schedule\.decay: must be one of cosine, linear, inverse_sqrt, constant, got 'exponential'"),
        ("distributed.strategy=zero3", r"distributed\.strategy: must be one of auto, ddp, fsdp, got 'zero3'"),
        ("checkpoint.select=avg:0", r"checkpoint\.select: must be best, last or avg:K, got 'avg:0'"),
        ("trainable=adaptor,decoder", r"trainable\[1\]: must be one of encoder, adaptor, llm, got 'decoder'"),
    ],
)
def test_a_value_outside_the_set_names_the_allowed_ones(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [setting])


def test_the_same_check_applies_to_profile_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("precision: half\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mine\.yaml: precision: must be one of auto, bf16, fp16, fp32"):
        load_config(path)


@pytest.mark.parametrize("setting", ["device=cuda:3", "device=cpu", "checkpoint.select=avg:12", "precision=bf16", "schedule.decay=inverse_sqrt"])
def test_values_inside_the_set_load(setting: str) -> None:
    key, value = setting.split("=")
    config = load_config(None, [setting])
    section, _, name = key.rpartition(".")
    assert getattr(getattr(config, section) if section else config, name) == value


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
    failures = [
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("nope=1", "nope: unknown key"),
        ("max_epochs", "expected key=value"),
        ("checkpoint.select=median", "best, last or avg:K"),
    ]
    for bad, message in failures:
        with pytest.raises(ConfigError, match=message):
            load_config(profiles_dir() / "small-data.yaml", [bad])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(profiles_dir() / "medium-data.yaml", ["max_steps=7"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config
