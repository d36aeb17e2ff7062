"""Training config schema, profiles, sampler and manifest parsing: fast, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speech_fixtures import chatml_line, write_jsonl
from speechft.data.manifest import TrainSource, parse_line, read_manifest
from speechft.data.sampler import TokenBatchSampler, token_budget_batches
from speechft.errors import ConfigError, InputError
from speechft.profiles import profile_for_hours, profiles_dir
from speechft.train.config import TrainConfig, dump_config, field_docs, load_config
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


def test_every_field_is_documented() -> None:
    docs = field_docs()
    assert "optim.lr" in docs and "data.token_budget" in docs and "checkpoint.select" in docs
    assert all(text.strip() for text in docs.values())


def test_profile_auto_by_hours(tmp_path: Path) -> None:
    assert profile_for_hours(10)[0] == "small-data"
    assert profile_for_hours(2000)[0] == "medium-data"
    assert profile_for_hours(7000)[0] == "medium-data"
    assert profile_for_hours(20000)[0] == "large-data"
    lines = [chatml_line(f"k{i}", tmp_path / "a.wav", "x") | {"speech_length": 360_000} for i in range(20)]  # 20 h
    train = write_jsonl(tmp_path / "train.jsonl", lines)
    path, name, why = resolve_profile("auto", [TrainSource(train)])
    assert name == "small-data" and path.exists() and "20.0 h" in why


def test_train_source_weights() -> None:
    assert TrainSource.parse("a.jsonl") == TrainSource(Path("a.jsonl"), 1.0)
    assert TrainSource.parse("b.jsonl:0.2") == TrainSource(Path("b.jsonl"), 0.2)
    assert TrainSource.parse("/x:y/c.jsonl") == TrainSource(Path("/x:y/c.jsonl"), 1.0)


def test_user_turn_without_bang_is_rejected(tmp_path: Path) -> None:
    good = chatml_line("good", tmp_path / "a.wav", "hi", seconds=1.0)
    bad = chatml_line("nobang", tmp_path / "a.wav", "hi", bang=False, seconds=1.0)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{not json\n", encoding="utf-8")
    utterances, skipped = read_manifest(path)
    assert [u.key for u in utterances] == ["good"]
    assert skipped[0].key == "nobang" and "'!'" in skipped[0].reason and skipped[0].where.endswith(":2")
    assert "not valid JSON" in skipped[1].reason
    assert isinstance(parse_line(json.dumps(good), "f:1", "line-1"), type(utterances[0]))
    path.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="no usable lines"):
        read_manifest(path)


def test_batches_respect_the_budget() -> None:
    lengths = [100, 900, 300, 300, 50, 700, 200, 120]
    batches = token_budget_batches(list(range(len(lengths))), lengths, token_budget=1000, max_utterances=3, sort_buffer=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert max(lengths[i] for i in batch) * len(batch) <= 1000 or len(batch) == 1


def _sampler(**kwargs: object) -> TokenBatchSampler:
    lengths = [50 + (i * 37) % 400 for i in range(40)]
    return TokenBatchSampler(lengths, token_budget=1200, max_utterances=4, sort_buffer=16, seed=3, **kwargs)  # type: ignore[arg-type]


def test_sampler_is_deterministic_and_reshuffles_per_epoch() -> None:
    first, again = _sampler(), _sampler()
    assert first.epoch_batches(0) == again.epoch_batches(0)
    assert first.epoch_batches(0) != first.epoch_batches(1)
    assert sorted(i for b in first.epoch_batches(1) for i in b) == list(range(40))


def test_sampler_shards_disjointly_by_rank() -> None:
    shards = [_sampler(rank=rank, world_size=2).epoch_batches(0) for rank in range(2)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for shard in shards for b in shard for i in b]
    assert len(seen) == len(set(seen))
    everything = _sampler().epoch_batches(0)
    assert len(seen) >= sum(len(b) for b in everything) - max(len(b) for b in everything)


def test_sampler_resumes_mid_epoch() -> None:
    sampler = _sampler()
    sampler.set_epoch(2, start=3)
    assert list(sampler) == sampler.epoch_batches(2)[3:]
    assert sampler.state_dict() == {"seed": 3, "epoch": 2, "start": 3}


def test_sampler_weights_replay_a_fraction() -> None:
    lengths = [100] * 30
    sampler = TokenBatchSampler(lengths, token_budget=1000, max_utterances=10, seed=0, groups=[list(range(20)), list(range(20, 30))], weights=[1.0, 0.2])
    drawn = [i for b in sampler.epoch_batches(0) for i in b]
    assert sum(1 for i in drawn if i < 20) == 20
    assert sum(1 for i in drawn if i >= 20) == 2
    other = [i for b in sampler.epoch_batches(1) for i in b if i >= 20]
    assert len(other) == 2


def test_default_config_is_valid() -> None:
    assert TrainConfig().optim.grad_clip == 5.0
