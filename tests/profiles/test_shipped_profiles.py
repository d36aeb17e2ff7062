"""The shipped profiles are data: a header saying how to run them and why, and only the keys that differ from the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from speech_fixtures import chatml_line, write_jsonl

from speechft.data.manifest import TrainSource
from speechft.profiles import GUIDE_PROFILES, PROFILE_ALIASES, PROFILES, profile_for_hours, profiles_dir
from speechft.train.config import TrainConfig, config_from_dict, config_to_dict, load_config
from speechft.train.entry import resolve_profile

# Each profile's resolved config as it was when the profiles still spelled out every key.
RESOLVED = Path(__file__).resolve().parents[1] / "data" / "profiles-resolved.json"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


@pytest.mark.parametrize("name", GUIDE_PROFILES)
def test_trimmed_profile_resolves_as_before(name: str) -> None:
    expected = _flatten(json.loads(RESOLVED.read_text(encoding="utf-8"))[name])
    resolved = _flatten(json.loads(json.dumps(config_to_dict(load_config(profiles_dir() / f"{name}.yaml")))))
    defaults = _flatten(json.loads(json.dumps(config_to_dict(TrainConfig()))))
    for key, value in resolved.items():
        # A field added to the schema since the snapshot must come from its default in every profile.
        assert value == expected.get(key, defaults[key]), f"{name}: {key}"
    assert set(resolved) & set(expected), "the snapshot shares no key with the schema"


@pytest.mark.parametrize("name", PROFILES)
def test_profile_sets_only_keys_that_differ_from_the_defaults(name: str) -> None:
    data = yaml.safe_load((profiles_dir() / f"{name}.yaml").read_text(encoding="utf-8"))
    defaults = _flatten(config_to_dict(TrainConfig()))
    # Converting through the schema compares 2.0e-5 with 2e-05 and [a, b] with (a, b) as equal.
    converted = _flatten(config_to_dict(config_from_dict(data, name)))
    same = [key for key in _flatten(data) if converted[key] == defaults[key]]
    assert not same, f"{name}.yaml repeats the schema's defaults for {same}; delete those keys"


@pytest.mark.parametrize("name", GUIDE_PROFILES)
def test_profile_header_gives_command_rule_and_alias(name: str) -> None:
    lines = (profiles_dir() / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(f"# speechft train --profile {name} --model-dir ")
    assert lines[1].startswith("# Rule (Fun-ASR guide): ") and "hours" in lines[1]
    aliases = [alias for alias, target in PROFILE_ALIASES.items() if target == name]
    assert aliases and lines[2] == f"# Also reachable as --profile {aliases[0]}, the guide's name for this advice."


def test_llm_lora_header_says_when_and_that_auto_never_picks_it() -> None:
    lines = (profiles_dir() / "llm-lora.yaml").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# speechft train --profile llm-lora --model-dir ")
    assert lines[1].startswith("# When: ") and "hours" in lines[1]
    assert "no alias and --profile auto never picks it" in lines[2]
    config = load_config(profiles_dir() / "llm-lora.yaml")
    assert config.lora.enabled and config.trainable == ("adaptor",)
    assert (config.lora.rank, config.lora.alpha, config.lora.dropout, config.lora.target_modules) == (16, 32, 0.05, ("q_proj", "v_proj"))
    assert "llm-lora" not in PROFILE_ALIASES.values()
    assert all(profile_for_hours(hours)[0] in GUIDE_PROFILES for hours in (0.1, 10, 500, 3000, 8000, 50000))


def test_the_folder_holds_exactly_the_shipped_profiles() -> None:
    # A YAML dropped into the folder but missing from PROFILES would ship untested and unreachable by name.
    assert sorted(path.stem for path in profiles_dir().glob("*.yaml")) == sorted(PROFILES)


def test_profiles_train_the_guides_modules() -> None:
    assert load_config(profiles_dir() / "small-data.yaml").trainable == ("adaptor",)
    assert load_config(profiles_dir() / "medium-data.yaml").trainable == ("encoder", "adaptor")
    assert load_config(profiles_dir() / "large-data.yaml").trainable == ("encoder", "adaptor", "llm")


def test_profile_auto_by_hours(tmp_path: Path) -> None:
    assert profile_for_hours(10)[0] == "small-data"
    assert profile_for_hours(2000)[0] == "medium-data"
    assert profile_for_hours(7000)[0] == "medium-data"
    assert profile_for_hours(20000)[0] == "large-data"
    lines = [chatml_line(f"k{i}", tmp_path / "a.wav", "x") | {"speech_length": 360_000} for i in range(20)]  # 20 h
    train = write_jsonl(tmp_path / "train.jsonl", lines)
    path, name, why = resolve_profile("auto", [TrainSource(train)])
    assert name == "small-data" and path.exists() and "20.0 h" in why
