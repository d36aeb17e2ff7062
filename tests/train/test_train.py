"""Fine-tuning the tiny model end to end on CPU: profiles, overfitting,
checkpoints loadable by funasr.AutoModel, dry run, skipped samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from speech_fixtures import chatml_line, make_corpus, write_jsonl

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("corpus")
    lines = make_corpus(root / "wav", 6)
    return write_jsonl(root / "train.jsonl", lines), lines


def _config(*overrides: str):
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config

    return load_config(profiles_dir() / "small-data.yaml", ["data.num_workers=0", *overrides])


@pytest.mark.slow
@pytest.mark.parametrize(
    "profile, changed", [("small-data", {"adaptor"}), ("medium-data", {"encoder", "adaptor"}), ("large-data", {"encoder", "adaptor", "llm"})]
)
def test_each_profile_changes_exactly_its_modules(tiny_dir: Path, corpus: tuple[Path, list[dict]], profile: str, changed: set[str]) -> None:
    from speechft.data.collate import collate
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.model.build import load_model, module_of
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.forward import TrainForward
    from speechft.train.loop import train_step
    from speechft.train.modules import apply_trainable, set_train_mode
    from speechft.train.optim import make_optimizer

    config = load_config(profiles_dir() / f"{profile}.yaml", ["optim.lr=1e-2", "schedule.warmup_fraction=0"])
    bundle = load_model(tiny_dir)
    model = bundle.model
    apply_trainable(model, config.trainable)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    utterances, _ = read_manifest(corpus[0])
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    optimizer, scheduler = make_optimizer(model, config, total_steps=10)
    assert all(p.requires_grad for group in optimizer.param_groups for p in group["params"])
    set_train_mode(model, config.trainable)
    assert model.audio_encoder.training == ("encoder" in changed)
    assert model.llm.training == ("llm" in changed)
    for step in range(2):
        train_step(TrainForward(model, torch.device("cpu"), None), optimizer, scheduler, [collate([dataset[2 * step], dataset[2 * step + 1]])], config)
    moved = {module_of(name) for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert moved == changed


@pytest.mark.slow
def test_overfit_checkpoint_and_funasr_decode_the_same(tiny_dir: Path, corpus: tuple[Path, list[dict]], tmp_path: Path) -> None:
    from funasr import AutoModel

    from speechft.data.manifest import TrainSource
    from speechft.model.build import load_model
    from speechft.model.generate import clean_text, greedy_decode
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    path, lines = corpus
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    extra = [
        chatml_line("corrupt", broken, "seven", seconds=0.8),
        chatml_line("nobang", Path(lines[0]["messages"][1]["content"]), "one", bang=False, seconds=0.8),
    ]
    train = write_jsonl(tmp_path / "train.jsonl", [*json.loads("[" + ",".join(path.read_text(encoding="utf-8").splitlines()) + "]"), *extra])
    (tmp_path / "train.prompt.json").write_text('{"format": "test"}\n', encoding="utf-8")
    output = tmp_path / "run"
    # 2 of 8 lines are bad (the limit allows it); validation on the training file itself, to see it overfit.
    config = _config(
        "max_epochs=10",
        "optim.lr=5e-3",
        "trainable=adaptor,llm",
        "data.token_budget=400",
        "data.max_utterances_per_batch=3",
        "validation.every_steps=0",
        "checkpoint.keep_last=2",
        "checkpoint.select=best",
        "data.max_skip_fraction=0.25",
    )
    result = run_training(TrainRequest(model_dir=tiny_dir, train=(TrainSource(train),), output_dir=output, config=config, show_progress=False, val=train))

    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "validation"]
    assert train_losses[-1] < train_losses[0] / 3
    assert val[-1]["val_loss"] < val[0]["val_loss"] / 2
    assert result.best_val_cer is not None

    skipped = [json.loads(line) for line in (output / "skipped.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = {s["key"]: s["reason"] for s in skipped}
    assert "'!'" in reasons["nobang"]
    assert "audio unreadable" in reasons["corrupt"]
    assert result.skipped_samples >= 2

    for name in (
        "config.yaml",
        "configuration.json",
        "model.pt",
        "Qwen3-0.6B/config.json",
        "Qwen3-0.6B/tokenizer.json",
        "train_config.yaml",
        "prompt.json",
        "curves.png",
    ):
        assert (output / name).exists(), name
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    checkpoints = sorted(p.name for p in (output / "checkpoints").iterdir())
    assert 1 <= len(checkpoints) <= 3 and all(name.startswith("step-") for name in checkpoints)
    assert {"trainable.pt", "state.pt", "meta.json"} <= {p.name for p in (output / "checkpoints" / checkpoints[-1]).iterdir()}
    state = torch.load(output / "model.pt")
    assert any(k.startswith("llm.") for k in state) and any(k.startswith("audio_encoder.") for k in state)

    waveforms = [sf.read(line["messages"][1]["content"].split("!")[1].split("<|")[0], dtype="float32")[0] for line in lines]
    ours = greedy_decode(load_model(output), waveforms, ["语音转写："] * len(lines), max_new_tokens=20)
    reference = AutoModel(model=str(output), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)
    wavs = [line["messages"][1]["content"].split("!")[1].split("<|")[0] for line in lines]
    theirs = [clean_text(r["text"]) for r in reference.generate(input=wavs, max_length=20)]
    assert ours == theirs
    assert all(ours)  # it learned to say something, so the comparison is not of empty strings

    # resume from the last checkpoint: nothing left to do, same selection
    again = run_training(
        TrainRequest(model_dir=tiny_dir, train=(TrainSource(train),), output_dir=output, config=config, show_progress=False, resume="auto", val=train)
    )
    assert again.steps == result.steps


@pytest.mark.slow
def test_dry_run_from_the_cli(tiny_dir: Path, corpus: tuple[Path, list[dict]], runner, tmp_path: Path) -> None:
    from speechft.cli.app import app

    output = tmp_path / "never"
    result = runner.invoke(
        app,
        [
            "train",
            "--profile",
            "medium-data",
            "--model-dir",
            str(tiny_dir),
            "--train",
            str(corpus[0]),
            "--output-dir",
            str(output),
            "--dry-run",
            "data.num_workers=0",
            "optim.lr=1e-4",
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in (
        "resolved config",
        "lr: 0.0001",
        "encoder",
        "adaptor",
        "llm",
        "batches per epoch",
        "token budget",
        "peak memory estimate",
        "dry run: nothing was trained",
    ):
        assert expected in text, expected
    assert not output.exists()


def test_cli_reports_config_errors(tiny_dir: Path, corpus: tuple[Path, list[dict]], runner) -> None:
    from speechft.cli.app import app

    result = runner.invoke(app, ["train", "--profile", "small-data", "--model-dir", str(tiny_dir), "--train", str(corpus[0]), "--dry-run", "optim.lrr=1"])
    assert result.exit_code == 1
    assert "optim.lrr: unknown key" in result.output


def test_missing_llm_weights_refuse_to_train(tiny_dir: Path, corpus: tuple[Path, list[dict]], runner, tmp_path: Path) -> None:
    from speechft.cli.app import app

    broken = tmp_path / "model"
    shutil.copytree(tiny_dir, broken)
    state = torch.load(broken / "model.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("llm.")}, broken / "model.pt")
    result = runner.invoke(app, ["train", "--model-dir", str(broken), "--train", str(corpus[0]), "--dry-run"])
    assert result.exit_code == 1
    assert "missing keys" in result.output and "--allow-missing" in result.output
