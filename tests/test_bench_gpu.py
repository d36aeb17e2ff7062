"""bench/gpu.py: its FLOP count per profile, and its CPU smoke mode end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_model_flops_count_backward_only_where_gradients_flow() -> None:
    bench = _bench()
    # One parameter and one token per module: the multipliers alone.
    flops = bench.ModelFlops(encoder=1, adaptor=1, llm=1, output_layer=1, encoder_tokens=1, adaptor_tokens=1, llm_tokens=1, target_tokens=1)
    # Encoder forward only; adaptor forward + both backwards; LLM and output layer forward + input gradients.
    assert flops.per_audio_second("small-data") == 2 + 6 + 4 + 4
    assert flops.per_audio_second("medium-data") == 6 + 6 + 4 + 4
    assert flops.per_audio_second("large-data") == 6 * 4
    assert flops.per_audio_second("llm-lora") == flops.per_audio_second("small-data")


@pytest.mark.slow
def test_the_smoke_mode_runs_a_profile_on_cpu(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--profiles", "small-data", "--work-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    figures = json.loads((tmp_path / "gpu-bench.json").read_text(encoding="utf-8"))
    (result,) = figures["results"]
    assert result["profile"] == "small-data" and result["steps_measured"] == 3
    assert result["audio_hours_per_gpu_hour"] > 0 and result["step_time_s"] > 0 and result["token_budget"] == 6000
    assert "small-data" in done.stdout and "audio-h/GPU-h" in done.stdout
