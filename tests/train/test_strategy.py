"""`distributed.strategy: auto` (DDP when the memory estimate fits one GPU, FSDP2 otherwise), its
report, and FSDP2's mixed-precision policy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

GIB = 2**30


def test_explicit_strategies_are_kept() -> None:
    from speechft.train.plan import choose_strategy

    for setting in ("ddp", "fsdp"):
        choice = choose_strategy(setting, device="cuda:0", device_bytes=80 * GIB, static_bytes=200 * GIB, peak_bytes=300 * GIB)
        assert (choice.strategy, choice.reason) == (setting, f"distributed.strategy: {setting}")


def test_auto_on_cpu_is_ddp() -> None:
    from speechft.train.plan import choose_strategy

    choice = choose_strategy("auto", device="cpu", device_bytes=None, static_bytes=200 * GIB, peak_bytes=300 * GIB)
    assert choice.strategy == "ddp" and "cpu" in choice.describe()


@pytest.mark.parametrize(
    "peak_gib, expected",
    [(30, "ddp"), (64, "ddp"), (64.5, "fsdp"), (120, "fsdp")],  # 80 GiB with 20% to spare: 64 GiB fit
)
def test_auto_picks_ddp_when_the_estimate_fits_one_gpu(peak_gib: float, expected: str) -> None:
    from speechft.train.plan import DDP_HEADROOM, choose_strategy

    assert DDP_HEADROOM == 0.2
    choice = choose_strategy("auto", device="cuda:0", device_bytes=80 * GIB, static_bytes=14 * GIB, peak_bytes=int(peak_gib * GIB))
    assert choice.strategy == expected
    line = choice.describe()
    assert line.startswith(f"strategy: {expected} (auto: weights, gradients and AdamW state 14.0 GiB + activations ")
    assert f"= {peak_gib:.1f} GiB, cuda:0 has 80.0 GiB" in line
    assert ("FSDP2 shards" in line) == (expected == "fsdp")


def test_static_memory_counts_fp32_weights_and_adamw_of_what_trains() -> None:
    from speechft.train.modules import ModuleCount
    from speechft.train.plan import static_memory

    counts = {"encoder": ModuleCount(trainable=0, frozen=100), "llm": ModuleCount(trainable=10, frozen=0)}
    assert static_memory(counts) == 110 * 4 + 10 * (4 + 8)


def test_settle_strategy_decides_on_rank_zero_and_says_why(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from speechft.train import distributed as dist_tools
    from speechft.train.config import load_config
    from speechft.train.plan import settle_strategy

    config = load_config(None, ["distributed.strategy=auto"])
    one = dist_tools.World(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), strategy="auto")
    assert settle_strategy(config, one, None, {}, None, None) is one  # a world of one wraps nothing
    # Two ranks without a process group: rank 0's decision is what every rank receives.
    monkeypatch.setattr(dist_tools, "broadcast_from_main", lambda world, value: value)
    main = dataclasses.replace(one, world_size=2)
    settled = settle_strategy(config, main, None, {}, None, None)
    assert settled.strategy == "ddp" and not settled.sharded
    assert "strategy: ddp (auto: on cpu every rank holds the whole model)" in capsys.readouterr().err
    fsdp = settle_strategy(load_config(None, ["distributed.strategy=fsdp"]), main, None, {}, None, None)
    assert fsdp.sharded


def test_large_data_uses_auto() -> None:
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config

    assert load_config(profiles_dir() / "large-data.yaml").distributed.strategy == "auto"


def test_mixed_precision_policy_is_bf16_compute_fp32_reductions_on_cuda_only() -> None:
    from speechft.train.distributed import mixed_precision_policy

    policy = mixed_precision_policy("cuda", torch.bfloat16)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert mixed_precision_policy("cuda", None) is None  # precision: fp32
    assert mixed_precision_policy("cpu", None) is None


@pytest.mark.slow
def test_the_dry_run_reports_the_strategy_and_the_memory_estimate(tiny_dir: Path, tmp_path: Path, runner) -> None:  # noqa: ANN001
    from speech_fixtures import make_corpus, write_jsonl

    from speechft.cli.app import app

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 4))
    arguments = ["train", "--profile", "large-data", "--model-dir", str(tiny_dir), "--train", str(train), "--dry-run", "data.num_workers=0", "device=cpu"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"peak memory estimate: [0-9.]+ [KMG]i?B", text)
    assert "with several ranks, strategy: ddp (auto: on cpu every rank holds the whole model)" in text
    result = runner.invoke(app, [*arguments, "distributed.strategy=fsdp"])
    assert "with several ranks, strategy: fsdp (distributed.strategy: fsdp)" in " ".join(result.output.split())
