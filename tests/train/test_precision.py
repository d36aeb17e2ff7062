"""precision: fp16 autocast with a dynamic loss scale (for GPUs without bf16), tried on CPU: it
trains, an overflowing step is skipped and halves the scale, and a resumed run is bitwise exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

torch = pytest.importorskip("torch")

# 6 utterances, one held out, x 2 = 10 one-utterance batches per epoch; checkpoints every 4 steps.
SETTINGS = [
    "precision=fp16",
    "device=cpu",
    "data.num_workers=0",
    "data.dither=1.0",
    "data.max_utterances_per_batch=1",
    "max_epochs=3",
    "max_steps=12",
    "optim.lr=5e-3",
    "trainable=adaptor",
    "log_every=1",
    "validation.every_steps=4",
    "validation.max_utterances=1",
    "validation.max_new_tokens=2",
    "checkpoint.keep_last=100",
    "checkpoint.select=last",
]


def _request(model: Path, corpus: Path, output: Path, resume: str = "off"):
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.run_dir import TrainRequest

    config = load_config(profiles_dir() / "small-data.yaml", SETTINGS)
    return TrainRequest(model_dir=model, train=(TrainSource(corpus, 2.0),), output_dir=output, config=config, show_progress=False, resume=resume)


def test_fp16_is_a_precision_choice_and_autocasts_in_half() -> None:
    from speechft.train.config import load_config
    from speechft.train.modules import autocast_for, precision_name

    config = load_config(None, ["precision=fp16"])
    device, dtype = autocast_for(config, torch.device("cpu"))
    assert dtype is torch.float16
    assert precision_name(dtype).startswith("fp16")
    assert autocast_for(load_config(None, ["precision=auto"]), torch.device("cpu"))[1] is None


def test_loss_scale_halves_on_overflow_and_grows_after_clean_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    from speechft.train import step

    monkeypatch.setattr(step, "GROWTH_INTERVAL", 3)
    scale = step.make_loss_scale(torch.float16, torch.device("cpu"), 1024.0, 0)
    assert scale is not None and step.make_loss_scale(torch.bfloat16, torch.device("cpu"), 1024.0, 0) is None
    scale.scaler.scale(torch.ones(()))  # a step scales its loss before the scale is updated
    scale.after_step(finite=False)
    assert (scale.scale, scale.good_steps) == (512.0, 0)
    for _ in range(3):
        scale.after_step(finite=True)
    assert (scale.scale, scale.good_steps) == (1024.0, 0)
    assert scale.scaler.get_scale() == 1024.0  # the device scale follows the host's


@pytest.mark.slow
def test_an_overflowing_fp16_step_is_skipped_and_counted_without_diverging(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.collate import collate
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.model.build import load_model
    from speechft.train.forward import TrainForward
    from speechft.train.loop import _count_nonfinite
    from speechft.train.modules import apply_trainable
    from speechft.train.optim import make_optimizer
    from speechft.train.state import TrainState
    from speechft.train.step import LossScale, make_loss_scale, train_step

    config = _request(tiny_dir, tmp_path, tmp_path).config
    bundle = load_model(tiny_dir)
    apply_trainable(bundle.model, config.trainable)
    utterances, _ = read_manifest(write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 2)))
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    optimizer, scheduler = make_optimizer(bundle.model, config, total_steps=10)
    forward = TrainForward(bundle.model, torch.device("cpu"), torch.float16)
    batch = collate([dataset[0], dataset[1]])
    before = {name: p.detach().clone() for name, p in bundle.model.named_parameters() if p.requires_grad}

    huge = make_loss_scale(torch.float16, torch.device("cpu"), 3e38, 0)
    assert isinstance(huge, LossScale)
    stats = train_step(forward, optimizer, scheduler, [batch], config, loss_scale=huge)
    assert stats.skipped and stats.loss_scale == 3e38 and huge.scale == 1.5e38
    assert all(torch.equal(p, before[name]) for name, p in bundle.model.named_parameters() if p.requires_grad)
    state = TrainState()
    _count_nonfinite(state, stats, config)
    assert (state.nonfinite_steps, state.nonfinite_in_a_row) == (1, 0)  # the scaler's overflow: no step towards divergence

    stats = train_step(forward, optimizer, scheduler, [batch], config, loss_scale=make_loss_scale(torch.float16, torch.device("cpu"), 1024.0, 0))
    assert not stats.skipped
    assert any(not torch.equal(p, before[name]) for name, p in bundle.model.named_parameters() if p.requires_grad)


@pytest.mark.slow
def test_fp16_run_trains_and_resumes_bitwise(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.train.checkpoint import STATE_FILE, TRAINABLE_FILE, list_checkpoints
    from speechft.train.loop import run_training

    corpus = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 6))
    reference = tmp_path / "uninterrupted"
    run_training(_request(tiny_dir, corpus, reference))
    losses = [json.loads(line)["loss"] for line in (reference / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if '"train"' in line]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    saved = torch.load(list_checkpoints(reference)[-1].path / STATE_FILE, weights_only=False)["train_state"]
    assert saved["loss_scale"] > 0 and saved["loss_scale_good_steps"] > 0

    # The run as a SIGKILL after the step-4 checkpoint would leave it (mid-epoch), then resumed.
    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    for checkpoint in list_checkpoints(resumed):
        if checkpoint.step > 4:
            shutil.rmtree(checkpoint.path)
    for name in ("model.pt", "train_summary.json"):
        (resumed / name).unlink(missing_ok=True)
    assert torch.load(list_checkpoints(resumed)[-1].path / STATE_FILE, weights_only=False)["train_state"]["batch_in_epoch"] > 0
    run_training(_request(tiny_dir, corpus, resumed, resume="auto"))
    ours = torch.load(list_checkpoints(resumed)[-1].path / TRAINABLE_FILE)
    theirs = torch.load(list_checkpoints(reference)[-1].path / TRAINABLE_FILE)
    assert set(ours) == set(theirs) and all(torch.equal(ours[name], theirs[name]) for name in theirs)
