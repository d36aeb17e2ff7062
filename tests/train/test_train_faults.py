"""Faults: a kill during a checkpoint write, a full disk, non-finite losses, an unusable output
directory, and a rank that dies while the others wait for it."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

from speechft.errors import TrainingError

torch = pytest.importorskip("torch")


class _Solo:
    is_main, sharded, world_size = True, False, 1


def _save(run_dir: Path, step: int, model: torch.nn.Module) -> None:
    from speechft.train import checkpoint as ckpt

    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    weights, optimizer_state = ckpt.training_snapshot(model, model, optimizer, _Solo())
    ckpt.save_checkpoint(
        run_dir,
        step,
        weights=weights,
        optimizer_state=optimizer_state,
        scheduler=scheduler,
        train_state={"step": step},
        rng_states=[ckpt.rng_state()],
        optimizer_format="positional",
        world_size=1,
        val_cer=None,
        val_loss=None,
    )


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    from speechft.train import checkpoint as ckpt

    model = torch.nn.Linear(4, 4)
    _save(tmp_path, 10, model)
    # What a kill leaves mid-write: the temporary folder of the next step, its files cut short.
    partial = tmp_path / "checkpoints" / ".tmp-step-000020"
    shutil.copytree(tmp_path / "checkpoints" / "step-000010", partial)
    data = (partial / ckpt.TRAINABLE_FILE).read_bytes()
    (partial / ckpt.TRAINABLE_FILE).write_bytes(data[: len(data) // 2])
    (partial / ckpt.META_FILE).unlink()
    found = ckpt.list_checkpoints(tmp_path)
    assert [c.step for c in found] == [10]
    restored = torch.nn.Linear(4, 4)
    state = ckpt.load_checkpoint(found[-1].path, model=restored)
    assert state["train_state"] == {"step": 10}
    assert torch.equal(restored.weight, model.weight)
    _save(tmp_path, 20, model)  # the next write replaces the leftover
    assert [c.step for c in ckpt.list_checkpoints(tmp_path)] == [10, 20]


def test_a_full_disk_fails_cleanly_and_keeps_earlier_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechft.train import checkpoint as ckpt

    model = torch.nn.Linear(4, 4)
    _save(tmp_path, 10, model)
    real_save = torch.save

    def full_disk(obj: object, path: object, *args: object, **kwargs: object) -> None:
        real_save(obj, path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(TrainingError, match="No space left on device.*earlier checkpoints are intact"):
        _save(tmp_path, 20, model)
    monkeypatch.undo()
    assert [c.step for c in ckpt.list_checkpoints(tmp_path)] == [10]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000010"]


def test_weights_with_nan_are_never_written(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 4)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="NaN or infinite"):
        _save(tmp_path, 5, model)
    assert not list((tmp_path / "checkpoints").glob("step-*"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from speechft.testing.tiny_model import build_tiny_model_dir

    root = tmp_path_factory.mktemp("faults")
    return build_tiny_model_dir(root / "model", seed=0), write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 6))


def _request(tiny: tuple[Path, Path], output: Path, *overrides: str):  # noqa: ANN202
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.run_dir import TrainRequest

    settings = ["data.num_workers=0", "data.max_utterances_per_batch=1", "validation.max_utterances=1", "validation.max_new_tokens=2", *overrides]
    config = load_config(profiles_dir() / "small-data.yaml", settings)
    return TrainRequest(model_dir=tiny[0], train=(TrainSource(tiny[1]),), output_dir=output, config=config, show_progress=False)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_counted_then_abort(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechft.train import checkpoint as ckpt
    from speechft.train import forward, loop

    real_loss = forward.batch_loss_sum
    calls = {"count": 0}

    def poisoned(*args: object, **kwargs: object) -> torch.Tensor:
        loss = real_loss(*args, **kwargs)
        if kwargs.get("track_grad"):
            calls["count"] += 1
            if calls["count"] == 2 or calls["count"] >= 4:  # one isolated bad step, then a run of them
                return loss * float("nan")
        return loss

    monkeypatch.setattr(forward, "batch_loss_sum", poisoned)
    output = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"3 optimizer steps in a row had a non-finite loss.*optim\.max_nonfinite_steps"):
        loop.run_training(_request(tiny, output, "optim.max_nonfinite_steps=3", "validation.every_steps=1", "max_epochs=3"))
    checkpoints = ckpt.list_checkpoints(output)
    assert checkpoints and all(ckpt.all_finite(torch.load(c.path / ckpt.TRAINABLE_FILE)) for c in checkpoints)
    last = torch.load(checkpoints[-1].path / ckpt.STATE_FILE, weights_only=False)["train_state"]
    assert last["nonfinite_steps"] == 3 and last["nonfinite_in_a_row"] == 2  # the abort came at the third in a row


def test_an_output_dir_that_cannot_be_created_fails_before_training(tiny: tuple[Path, Path], tmp_path: Path, runner) -> None:
    from speechft.cli.app import app

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = runner.invoke(
        app, ["train", "--profile", "small-data", "--model-dir", str(tiny[0]), "--train", str(tiny[1]), "--output-dir", str(blocker / "run")]
    )
    assert result.exit_code == 1
    assert "--output-dir" in result.output and "cannot create it" in result.output


def test_too_little_free_space_fails_before_training(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechft.train import loop, output_dir

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(output_dir.shutil, "disk_usage", lambda _path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(TrainingError, match=r"GiB needed for checkpoints and the model, 0\.00 GiB free"):
        loop.run_training(_request(tiny, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.distributed
def test_a_dead_rank_makes_the_other_exit_naming_it(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from speechft.train.distributed import free_port

    output = tmp_path / "run"
    port = free_port()
    arguments = [
        sys.executable,
        "-m",
        "speechft",
        "train",
        "--profile",
        "small-data",
        "--model-dir",
        str(tiny[0]),
        "--train",
        f"{tiny[1]}:20",
        "--output-dir",
        str(output),
        "--quiet",
        "data.num_workers=0",
        "data.max_utterances_per_batch=1",
        "validation.every_steps=2",
        # A collective timeout far beyond the wait below: rank 0 can only finish in time by noticing the dead peer.
        "validation.max_utterances=1",
        "validation.max_new_tokens=2",
        "distributed.timeout_s=900",
    ]
    ranks = []
    for rank in range(2):
        environment = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONWARNINGS="ignore",
        )
        ranks.append(subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment))
    deadline = time.monotonic() + 180
    while not list((output / "checkpoints").glob("step-*/meta.json")):
        assert all(process.poll() is None for process in ranks), ranks[0].communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ranks[1].send_signal(signal.SIGKILL)
    _, stderr = ranks[0].communicate(timeout=90)
    ranks[1].communicate()
    assert ranks[0].returncode == 1, stderr[-3000:]
    assert "rank 1 stopped responding" in stderr.replace("\n", " "), stderr[-3000:]
