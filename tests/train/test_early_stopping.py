"""Early stopping (`validation.patience`) and the validation cadence of short runs
(`validation.min_validations`); the summary says why the run ended."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from speech_fixtures import make_corpus, write_jsonl

torch = pytest.importorskip("torch")


def _config(*overrides: str):
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config

    return load_config(profiles_dir() / "small-data.yaml", ["data.num_workers=0", "validation.every_steps=0", *overrides])


def _data(batches_per_epoch: int) -> SimpleNamespace:
    return SimpleNamespace(sampler=SimpleNamespace(batches_per_rank=lambda epoch: batches_per_epoch))


@pytest.mark.parametrize(
    "overrides, batches, expected",
    [
        (["max_epochs=3"], 10, 0),  # off: epoch ends only
        (["max_epochs=3", "validation.min_validations=6"], 10, 5),  # 3 epoch ends < 6: every 30 // 6 steps
        (["max_epochs=20", "validation.min_validations=6"], 10, 0),  # 20 epoch ends are enough
        (["max_epochs=2", "validation.every_steps=4", "validation.min_validations=3"], 10, 4),  # every_steps already gives 5
        (["max_epochs=2", "validation.every_steps=15", "validation.min_validations=8"], 10, 2),  # 20 // 8
        (["max_epochs=1", "validation.min_validations=50"], 10, 1),  # never below one step
    ],
)
def test_validation_cadence_scales_with_a_short_run(overrides: list[str], batches: int, expected: int) -> None:
    from speechft.train.plan import plan_steps
    from speechft.train.stopping import validation_cadence

    config = _config(*overrides)
    data = _data(batches)
    assert validation_cadence(config, data, plan_steps(config, data)[2]) == expected


def test_patience_counts_validations_without_a_lower_cer() -> None:
    from speechft.train.state import TrainState
    from speechft.train.stopping import end_reason, note_validation

    run = SimpleNamespace(config=_config("validation.patience=2", "max_epochs=9"), world=SimpleNamespace(is_main=False))
    state = TrainState()
    for step, cer in enumerate([0.5, 0.4, 0.4, 0.3, 0.35], start=1):
        state.step = step
        note_validation(run, state, cer)
        assert not state.early_stopped
    assert (state.best_val_cer, state.best_val_step, state.validations_without_gain) == (0.3, 4, 1)
    state.step = 6
    note_validation(run, state, 0.31)
    assert state.early_stopped
    assert end_reason(run, state) == "early stop: 2 validations in a row without a CER below the best 30.00% (step 4)"
    off = SimpleNamespace(config=_config("max_epochs=9"), world=SimpleNamespace(is_main=False))
    state = TrainState()
    for cer in [0.5] * 20:
        note_validation(off, state, cer)
    assert not state.early_stopped and end_reason(off, state) == "max_epochs 9 reached"


@pytest.mark.slow
def test_a_run_that_stops_improving_ends_early_and_says_why(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 4))
    # A learning rate too small to change a transcript: the CER of the first validation is never beaten.
    config = _config(
        "max_epochs=30", "optim.lr=1e-12", "validation.patience=2", "validation.max_new_tokens=3", "data.max_utterances_per_batch=2", "checkpoint.select=best"
    )
    request = TrainRequest(model_dir=tiny_dir, train=(TrainSource(train),), output_dir=tmp_path / "run", config=config, show_progress=False, val=train)
    result = run_training(request)
    validations = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) if r["kind"] == "validation"]
    assert len(validations) == 3  # the best, then two without a lower CER
    assert result.steps == 3 * 2  # three epochs of two batches, of thirty
    assert result.end_reason.startswith("early stop: 2 validations in a row without a CER below the best")
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["end_reason"] == result.end_reason
    assert (tmp_path / "run" / "model.pt").exists()
