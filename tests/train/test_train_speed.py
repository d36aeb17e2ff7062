"""Training speed features: fixed batch shapes, the compile / activation
checkpointing switches, frozen modules without gradients,
and the throughput written to metrics.jsonl. Behaviour only, no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 6))


@pytest.fixture(scope="module")
def bundle_and_samples(tiny_dir: Path, corpus: Path):
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.model.build import load_model

    bundle = load_model(tiny_dir)
    utterances, _ = read_manifest(corpus)
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    return bundle, [dataset[index] for index in range(len(dataset))]


def _config(*overrides: str):
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config

    return load_config(profiles_dir() / "small-data.yaml", ["data.num_workers=0", *overrides])


def test_bucket_config_parses_and_rejects_unordered(tmp_path: Path) -> None:
    from speechft.errors import ConfigError

    config = _config("data.speech_buckets=[16,32,64]", "data.token_buckets=64,128", "compile=true", "activation_checkpointing=true")
    assert config.data.speech_buckets == (16, 32, 64)
    assert config.data.token_buckets == (64, 128)
    assert config.compile is True and config.activation_checkpointing is True
    default = _config()
    assert default.data.speech_buckets == () and default.compile is False and default.activation_checkpointing is False
    with pytest.raises(ConfigError, match="data.speech_buckets"):
        _config("data.speech_buckets=[32,16]")
    with pytest.raises(ConfigError, match="compile"):
        _config("compile=maybe")


def test_bucketed_batches_have_fixed_shapes_and_the_same_loss(bundle_and_samples) -> None:
    from speechft.data.collate import collate
    from speechft.train.forward import batch_loss_sum

    bundle, samples = bundle_and_samples
    plain = collate(samples[:3])
    padded = collate(samples[:3], speech_buckets=(4, 64, 128), token_buckets=(40, 96, 200))
    assert padded.speech.shape[1] == 64 and padded.input_ids.shape[1] == 96
    assert plain.speech.shape[1] < 64 and plain.input_ids.shape[1] < 96
    assert torch.equal(padded.speech_lengths, plain.speech_lengths)
    assert padded.padding_fraction > plain.padding_fraction
    assert padded.target_tokens == plain.target_tokens
    model, device = bundle.model, torch.device("cpu")
    model.eval()
    with torch.no_grad():
        expected = batch_loss_sum(model, plain, device, None, track_grad=False)
        actual = batch_loss_sum(model, padded, device, None, track_grad=False)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_activation_checkpointing_keeps_gradients_and_is_used(tiny_dir: Path, bundle_and_samples, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.checkpoint

    from speechft.data.collate import collate
    from speechft.model.build import load_model
    from speechft.train import speed
    from speechft.train.forward import batch_loss_sum
    from speechft.train.modules import apply_trainable

    _, samples = bundle_and_samples
    batch = collate(samples[:3])
    device = torch.device("cpu")

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = load_model(tiny_dir).model
        apply_trainable(model, ("encoder", "adaptor", "llm"))
        model.eval()  # no dropout: the two runs must be comparable number for number
        if checkpointing:
            assert speed.enable_activation_checkpointing(model) == len(speed.repeated_layers(model))
            assert speed.enable_activation_checkpointing(model) == 0  # idempotent
        batch_loss_sum(model, batch, device, None, track_grad=True).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    expected = gradients(False)
    assert not calls
    actual = gradients(True)
    assert calls
    assert expected.keys() == actual.keys() and any(name.startswith("audio_encoder.") for name in actual)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-6)


def test_compile_switch_compiles_encoder_and_llm_in_place(tiny_dir: Path) -> None:
    from speechft.model.build import load_model
    from speechft.train.speed import apply_speed_switches

    model = load_model(tiny_dir).model
    keys = list(model.state_dict())
    apply_speed_switches(model, _config())
    assert model.audio_encoder._compiled_call_impl is None
    apply_speed_switches(model, _config("compile=true"))
    assert model.audio_encoder._compiled_call_impl is not None
    assert model.llm.model._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # checkpoints keep their names


@pytest.mark.parametrize("trainable, encoder_grad", [(("adaptor",), False), (("encoder", "adaptor"), True)])
def test_frozen_encoder_runs_without_grad_and_optimizer_holds_trainable_only(tiny_dir: Path, bundle_and_samples, trainable, encoder_grad: bool) -> None:
    from speechft.data.collate import collate
    from speechft.model.build import load_model
    from speechft.train.forward import batch_loss_sum
    from speechft.train.modules import apply_trainable, set_train_mode
    from speechft.train.optim import make_optimizer

    _, samples = bundle_and_samples
    model = load_model(tiny_dir).model
    counts = apply_trainable(model, trainable)
    set_train_mode(model, trainable)
    seen = []
    model.audio_encoder.register_forward_hook(lambda module, inputs, output: seen.append((torch.is_grad_enabled(), module.training)))
    batch_loss_sum(model, collate(samples[:2]), torch.device("cpu"), None, track_grad=True).backward()
    assert seen == [(encoder_grad, encoder_grad)]  # frozen: no autograd graph and no dropout
    optimizer, _ = make_optimizer(model, _config(), 10)
    held = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert held == sum(c.trainable for c in counts.values())
    assert all(p.requires_grad for group in optimizer.param_groups for p in group["params"])


@pytest.mark.slow
def test_training_logs_throughput_and_padding(tiny_dir: Path, corpus: Path, tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    config = _config(
        "max_steps=3",
        "log_every=1",
        "data.token_budget=400",
        "data.max_utterances_per_batch=2",
        "validation.every_steps=0",
        "validation.max_utterances=2",
        "data.speech_buckets=[32,64]",
    )
    run_training(TrainRequest(model_dir=tiny_dir, train=(TrainSource(corpus),), output_dir=tmp_path / "run", config=config, show_progress=False))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 3
    assert all(r["audio_seconds_per_second"] > 0 and 0 <= r["padding_fraction"] < 1 for r in train)
