"""data.token_budget: auto: the largest budget of the ladder whose estimated peak fits the GPU (the
default on CPU), reported by the dry run; numbers stay as configured."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from speech_fixtures import make_corpus, write_jsonl

from speechft.errors import ConfigError, TrainingError
from speechft.train.config import load_config

torch = pytest.importorskip("torch")


def test_token_budget_takes_a_number_or_auto_and_names_the_key_otherwise() -> None:
    assert load_config(None, ["data.token_budget=auto"]).data.token_budget == "auto"
    assert load_config(None, ["data.token_budget=8000"]).data.token_budget == 8000
    with pytest.raises(ConfigError, match=r"data\.token_budget: expected int or auto, got 'big'"):
        load_config(None, ["data.token_budget=big"])
    with pytest.raises(ConfigError, match=r"data\.token_budget: must be > 0 or auto"):
        load_config(None, ["data.token_budget=0"])


@pytest.fixture(scope="module")
def planned(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(config, data, model, parameter counts) of 40 short utterances: 2000, 3000 and 4000 tokens make different batches."""
    from speechft.data.manifest import TrainSource
    from speechft.model.build import load_model
    from speechft.train.corpus import prepare_data
    from speechft.train.modules import apply_trainable
    from speechft.train.plan import provisional
    from speechft.train.run_dir import TrainRequest

    root = tmp_path_factory.mktemp("budget")
    corpus = write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 40))
    config = load_config(None, ["data.token_budget=auto", "data.max_utterances_per_batch=100", "validation.held_out_fraction=0", "trainable=adaptor,llm"])
    request = TrainRequest(model_dir=tiny_dir, train=(TrainSource(corpus),), output_dir=root / "run", config=config, show_progress=False, dry_run=True)
    bundle = load_model(tiny_dir)
    counts = apply_trainable(bundle.model, config.trainable)
    return config, prepare_data(provisional(request), bundle), bundle.model, counts


def test_auto_on_cpu_is_the_default_budget(planned) -> None:  # noqa: ANN001
    from speechft.train.plan import settle_token_budget

    config, data, model, counts = planned
    settled, data, choice = settle_token_budget(config, data, model, counts, None, torch.device("cpu"))
    assert choice.token_budget == settled.data.token_budget == data.sampler.token_budget == 6000
    assert "auto on cpu" in choice.reason


def test_auto_on_a_gpu_takes_the_largest_rung_that_fits(planned, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from speechft.train import plan

    config, data, model, counts = planned
    rungs = (2000, 3000, 4000)
    peaks = {rung: plan.estimate_peak_memory(model, counts, plan.with_token_budget(data.sampler, rung), data.dataset, None, config.trainable) for rung in rungs}
    assert peaks[2000] < peaks[3000] < peaks[4000]
    gpu = SimpleNamespace(type="cuda")

    def settle_on(total_memory: float):
        properties = SimpleNamespace(total_memory=int(total_memory), name="Test GPU")
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: properties)
        return plan.settle_token_budget(config, data, model, counts, None, gpu)

    # Room for 3000 tokens' estimate but not 4000's.
    capacity = (peaks[3000] + peaks[4000]) / 2
    settled, budgeted, choice = settle_on((capacity + plan.AUTO_RESERVE_BYTES) / plan.AUTO_MEMORY_FRACTION)
    assert choice.token_budget == settled.data.token_budget == budgeted.sampler.token_budget == 3000
    assert data.sampler.token_budget == 6000  # the provisional sampler is left as it was
    assert "the largest of 2000..64000" in choice.reason and "Test GPU" in choice.reason
    with pytest.raises(TrainingError, match=r"data\.token_budget auto: even 2000 tokens per batch"):
        settle_on((peaks[2000] / 2 + plan.AUTO_RESERVE_BYTES) / plan.AUTO_MEMORY_FRACTION)


def test_a_dry_run_prints_the_budget_it_chose(tiny_dir: Path, tmp_path: Path, runner) -> None:  # noqa: ANN001
    from speechft.cli.app import app

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 4))
    arguments = ["train", "--profile", "small-data", "--model-dir", str(tiny_dir), "--train", str(train), "--dry-run", "data.num_workers=0"]
    result = runner.invoke(app, [*arguments, "data.token_budget=auto"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "token budget: 6000 padded speech_length + text_length per batch (auto on cpu" in text
    assert "peak memory estimate:" in text
