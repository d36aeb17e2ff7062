"""Exact resume: a run killed with SIGKILL in mid-epoch, or stopped with SIGTERM, and resumed ends
with weights bitwise identical to an uninterrupted run (CPU, fp32, loader in-process), with and
without augmentation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

# Encoder + adaptor train, so dropout (encoder) and dither draw random numbers every step: the
# RNG state must come back exactly. 6 utterances, one held out for validation, x 2 = 10
# one-utterance batches per epoch; a checkpoint every 5 steps lands in mid-epoch.
SETTINGS = [
    "data.num_workers=0",
    "data.dither=1.0",
    "data.max_utterances_per_batch=1",
    "max_epochs=2",
    "optim.lr=1e-3",
    "validation.every_steps=5",
    "validation.max_utterances=1",
    "validation.max_new_tokens=2",
    "checkpoint.keep_last=100",
    "checkpoint.select=last",
]
TOTAL_STEPS = 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from speechft.testing.tiny_model import build_tiny_model_dir

    root = tmp_path_factory.mktemp("resume")
    model = build_tiny_model_dir(root / "model", seed=0)
    corpus = write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 6))
    return model, corpus


def command(setup: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    model, corpus = setup
    return [
        sys.executable,
        "-m",
        "speechft",
        "train",
        "--profile",
        "medium-data",
        "--model-dir",
        str(model),
        "--train",
        f"{corpus}:2",
        "--output-dir",
        str(output),
        "--quiet",
        *SETTINGS,
        *extra,
    ]


def environment() -> dict[str, str]:
    # One thread everywhere: the same kernels, the same summation order, run after run.
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def final_weights(output: Path) -> dict:
    from speechft.train.checkpoint import TRAINABLE_FILE, list_checkpoints

    latest = list_checkpoints(output)[-1]
    assert latest.step == TOTAL_STEPS
    return torch.load(latest.path / TRAINABLE_FILE)


@pytest.fixture(scope="module")
def reference(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = subprocess.run(command(setup, output), capture_output=True, text=True, timeout=300, env=environment())
    assert done.returncode == 0, done.stderr[-3000:]
    return final_weights(output)


def start_and_wait_for_checkpoint(setup: tuple[Path, Path], output: Path, step: int, *extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(command(setup, output, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    deadline = time.monotonic() + 240
    while not (output / "checkpoints" / f"step-{step:06d}" / "meta.json").exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return process


def assert_bitwise_equal(ours: dict, reference: dict) -> None:
    assert set(ours) == set(reference)
    different = [name for name in reference if not torch.equal(ours[name], reference[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_sigkill_in_mid_epoch_then_resume_is_bitwise_identical(setup: tuple[Path, Path], reference: dict, tmp_path: Path) -> None:
    from speechft.train.checkpoint import STATE_FILE, list_checkpoints

    output = tmp_path / "run"
    process = start_and_wait_for_checkpoint(setup, output, 5)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (output / "train_summary.json").exists()
    latest = list_checkpoints(output)[-1]
    assert latest.step < TOTAL_STEPS
    saved = torch.load(latest.path / STATE_FILE, weights_only=False)
    assert saved["train_state"]["batch_in_epoch"] > 0  # the resume point is inside an epoch

    resumed = subprocess.run(command(setup, output, "--resume", "auto"), capture_output=True, text=True, timeout=300, env=environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {latest.path}" in resumed.stderr.replace("\n", "")
    assert_bitwise_equal(final_weights(output), reference)


def test_sigterm_finishes_the_step_checkpoints_and_prints_the_resume_command(setup: tuple[Path, Path], reference: dict, tmp_path: Path) -> None:
    import json

    output = tmp_path / "run"
    process = start_and_wait_for_checkpoint(setup, output, 5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "resume with:" in stdout and "--resume auto" in stdout
    stopped = json.loads((output / "stopped.json").read_text(encoding="utf-8"))
    assert stopped["signal"] == "SIGTERM" and stopped["step"] < TOTAL_STEPS
    assert Path(stopped["checkpoint"]).name == f"step-{stopped['step']:06d}"
    assert not (output / "model.pt").exists()  # an unfinished run is not a model yet

    resumed = subprocess.run(command(setup, output, "--resume", "auto"), capture_output=True, text=True, timeout=300, env=environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bitwise_equal(final_weights(output), reference)


@pytest.fixture(scope="module")
def augmentation(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every augmentation on: speed, gain, noise from a folder, SpecAugment."""
    import numpy as np
    import soundfile as sf

    noise = tmp_path_factory.mktemp("noise")
    sf.write(noise / "hiss.wav", (0.1 * np.random.default_rng(0).standard_normal(12000)).astype(np.float32), 16000)
    return [
        "augment.spec_augment=true",
        "augment.speed=true",
        "augment.gain_db=[-6,6]",
        f"augment.noise_dir={noise}",
        "augment.noise_probability=0.5",
    ]


def test_resume_with_augmentation_on_is_bitwise_identical(setup: tuple[Path, Path], reference: dict, augmentation: list[str], tmp_path: Path) -> None:
    uninterrupted = tmp_path / "uninterrupted"
    done = subprocess.run(command(setup, uninterrupted, *augmentation), capture_output=True, text=True, timeout=300, env=environment())
    assert done.returncode == 0, done.stderr[-3000:]
    augmented = final_weights(uninterrupted)
    assert any(not torch.equal(augmented[name], reference[name]) for name in reference)  # augmentation changed training

    output = tmp_path / "run"
    process = start_and_wait_for_checkpoint(setup, output, 5, *augmentation)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    resumed = subprocess.run(command(setup, output, *augmentation, "--resume", "auto"), capture_output=True, text=True, timeout=300, env=environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bitwise_equal(final_weights(output), augmented)
