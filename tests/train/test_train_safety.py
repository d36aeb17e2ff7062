"""Runs that must never silently go wrong: too much data skipped, an output directory holding an
earlier run, averaging unlike checkpoints, validating on training data, and ranks that do not
share the output directory."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from speech_fixtures import chatml_line, make_corpus, write_jsonl

from speechft.errors import InputError, TrainingError, UsageError

torch = pytest.importorskip("torch")


def _config(*overrides: str):  # noqa: ANN202
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config

    settings = ["data.num_workers=0", "data.max_utterances_per_batch=2", "validation.max_new_tokens=2", "log_every=1", *overrides]
    return load_config(profiles_dir() / "small-data.yaml", settings)


def _request(model_dir: Path, train: Path, output: Path, *overrides: str, **fields: object):  # noqa: ANN202
    from speechft.data.manifest import TrainSource
    from speechft.train.run_dir import TrainRequest

    return TrainRequest(model_dir=model_dir, train=(TrainSource(train),), output_dir=output, config=_config(*overrides), show_progress=False, **fields)


def _unreadable(directory: Path, key: str) -> dict:
    broken = directory / f"{key}.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    return chatml_line(key, broken, "seven", seconds=0.8)


# ------------------------------------------------------------------------------ held-out slice


def test_held_out_count_is_a_capped_fraction_that_never_empties_training() -> None:
    from speechft.train.holdout import held_out_count

    assert held_out_count(1000, fraction=0.05, limit=200) == 50
    assert held_out_count(10000, fraction=0.05, limit=200) == 200
    assert held_out_count(10000, fraction=0.05, limit=0) == 500
    assert held_out_count(6, fraction=0.05, limit=200) == 1  # at least one once there are two
    assert held_out_count(2, fraction=0.5, limit=0) == 1  # never all of them
    assert held_out_count(1, fraction=0.05, limit=200) == 0
    assert held_out_count(1000, fraction=0.0, limit=200) == 0


def test_the_held_out_keys_do_not_depend_on_line_order_and_no_file_is_emptied() -> None:
    from speechft.train.holdout import split_held_out

    keys = [f"spk{index % 7}-utt{index}" for index in range(60)]
    held = {keys[index] for index in split_held_out(keys, [list(range(60))], 5)}
    reversed_keys = keys[::-1]
    assert {reversed_keys[index] for index in split_held_out(reversed_keys, [list(range(60))], 5)} == held
    assert len(held) == 5 and held != set(keys[:5])  # not the first lines of the file

    # A key replayed in a second file is held out of both files ...
    replayed = sorted(held)[0]
    chosen = split_held_out([*keys, replayed, "other"], [list(range(60)), [60, 61]], 5)
    assert {keys.index(replayed), 60} <= chosen and 61 not in chosen and len(chosen) == 6
    # ... unless that would leave the second file nothing to train on: then another key is taken.
    chosen = split_held_out([*keys, replayed], [list(range(60)), [60]], 5)
    assert keys.index(replayed) not in chosen and 60 not in chosen and len(chosen) == 5


def test_validation_is_held_out_of_training_and_a_val_file_passes_the_length_limits(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.model.build import load_model
    from speechft.train.corpus import prepare_data

    lines = make_corpus(tmp_path / "wav", 40)
    train = write_jsonl(tmp_path / "train.jsonl", lines)
    bundle = load_model(tiny_dir)
    data = prepare_data(_request(tiny_dir, train, tmp_path / "run", "validation.held_out_fraction=0.1"), bundle)
    trained = {utterance.key for utterance in data.dataset.utterances}
    validated = {sample.key for sample in data.val_samples}
    assert len(validated) == 4 and not trained & validated and len(trained) + len(validated) == 40
    assert data.val_from_train and "held out of the training data" in data.validation and "not trained on" in data.validation
    again = prepare_data(
        _request(tiny_dir, write_jsonl(tmp_path / "shuffled.jsonl", lines[::-1]), tmp_path / "run", "validation.held_out_fraction=0.1"), bundle
    )
    assert {sample.key for sample in again.val_samples} == validated  # stable whatever the order

    long = chatml_line("too-long", Path(lines[0]["messages"][1]["content"].split("!")[1].split("<|")[0]), "one", seconds=40.0)
    val = write_jsonl(tmp_path / "val.jsonl", [*lines[:3], long])
    data = prepare_data(_request(tiny_dir, train, tmp_path / "run", val=val), bundle)
    assert {sample.key for sample in data.val_samples} == {"utt0", "utt1", "utt2"}
    assert [(skip.key, "data.max_sample_tokens" in skip.reason) for skip in data.val_skipped] == [("too-long", True)]
    assert not data.skipped and len(data.dataset) == 40  # a --val file takes nothing from training
    assert "1 of its lines skipped" in data.validation


# ------------------------------------------------------------------------- checkpoint averaging


def _checkpoint(run_dir: Path, step: int, weights: dict, val_cer: float) -> None:
    from speechft.train import checkpoint as ckpt

    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    ckpt.save_checkpoint(
        run_dir,
        step,
        weights=weights,
        optimizer_state=optimizer.state_dict(),
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        train_state={"step": step},
        rng_states=[ckpt.rng_state()],
        optimizer_format="positional",
        world_size=1,
        val_cer=val_cer,
        val_loss=None,
    )


def test_averaging_divides_by_the_checkpoints_that_hold_each_tensor(tmp_path: Path) -> None:
    from speechft.train.export import selected_weights

    for step, value in ((1, 1.0), (2, 2.0), (3, 6.0), (4, 100.0)):
        _checkpoint(tmp_path, step, {"a": torch.full((2,), value), "b": torch.full((1,), -value)}, val_cer=0.1 * step)
    averaged, chosen = selected_weights(tmp_path, "avg:3")
    assert [c.step for c in chosen] == [1, 2, 3]
    assert torch.equal(averaged["a"], torch.full((2,), 3.0)) and torch.equal(averaged["b"], torch.full((1,), -3.0))


def test_averaging_checkpoints_with_different_weights_is_an_error_naming_them(tmp_path: Path) -> None:
    from speechft.train.export import selected_weights

    _checkpoint(tmp_path, 1, {"audio_adaptor.w": torch.ones(2)}, val_cer=0.1)
    _checkpoint(tmp_path, 2, {"audio_adaptor.w": torch.ones(2), "llm.layer.w": torch.ones(2)}, val_cer=0.2)
    with pytest.raises(TrainingError) as caught:
        selected_weights(tmp_path, "avg:2")
    message = str(caught.value)
    assert "step-000001" in message and "step-000002" in message and "only in step-000002: llm.layer.w" in message
    assert "checkpoint.select=best" in message
    weights, _ = selected_weights(tmp_path, "best")  # one checkpoint: nothing to compare
    assert set(weights) == {"audio_adaptor.w"}


# ---------------------------------------------------------------------- an earlier run's directory


def _earlier_run(directory: Path, *, finished: bool = True) -> None:
    (directory / "checkpoints" / "step-000999").mkdir(parents=True)
    (directory / "checkpoints" / "step-000999" / "meta.json").write_text('{"step": 999}', encoding="utf-8")
    (directory / "metrics.jsonl").write_text('{"kind": "train", "step": 999}\n', encoding="utf-8")
    (directory / "tensorboard").mkdir()
    (directory / "skipped.jsonl").write_text("", encoding="utf-8")
    if finished:
        (directory / "model.pt").write_bytes(b"weights")
        (directory / "prompt.json").write_text("{}", encoding="utf-8")
        (directory / "Qwen3-0.6B").mkdir()
    (directory / "notes.txt").write_text("mine", encoding="utf-8")


def test_an_earlier_run_is_refused_naming_both_ways_on(tmp_path: Path) -> None:
    from speechft.train.output_dir import prepare_output_dir

    _earlier_run(tmp_path)
    with pytest.raises(UsageError) as caught:
        prepare_output_dir(tmp_path, resume="off", overwrite=False)
    message = str(caught.value)
    assert "checkpoints/ with 1 checkpoint" in message and "model.pt" in message
    assert "--resume auto" in message and "new --output-dir" in message and "--overwrite" in message
    (tmp_path / "checkpoints" / "step-000999").rename(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="model.pt"):  # a finished model alone is an earlier run too
        prepare_output_dir(tmp_path, resume="auto", overwrite=False)
    with pytest.raises(UsageError, match="is the --model-dir"):
        prepare_output_dir(tmp_path, resume="off", overwrite=True, model_dir=tmp_path)


def test_resume_auto_keeps_the_run_and_overwrite_removes_only_what_speechft_wrote(tmp_path: Path) -> None:
    from speechft.train.output_dir import prepare_output_dir

    run = tmp_path / "run"
    _earlier_run(run)
    # A complete checkpoint, so --resume auto has something to continue.
    for name in ("trainable.pt", "state.pt"):
        (run / "checkpoints" / "step-000999" / name).write_bytes(b"x")
    assert prepare_output_dir(run, resume="auto", overwrite=False) == []
    assert (run / "metrics.jsonl").exists()
    with pytest.raises(UsageError, match="pass one of them"):
        prepare_output_dir(run, resume="auto", overwrite=True)

    (run / "audio-cache").mkdir()
    notes = prepare_output_dir(run, resume="off", overwrite=True, keep=("audio-cache",))
    assert sorted(path.name for path in run.iterdir()) == ["audio-cache", "notes.txt"]
    assert "removed" in notes[0] and "checkpoints" in notes[0] and "model.pt" in notes[0]
    assert notes[1] == "--overwrite: kept 1 file(s) speechft did not write: notes.txt"


def test_logs_of_a_run_that_never_checkpointed_are_cleared_not_appended_to(tmp_path: Path) -> None:
    from speechft.train.output_dir import prepare_output_dir

    (tmp_path / "metrics.jsonl").write_text('{"kind": "data"}\n', encoding="utf-8")
    (tmp_path / "skipped.jsonl").write_text('{"key": "a"}\n', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    notes = prepare_output_dir(tmp_path, resume="off", overwrite=False)
    assert len(notes) == 1 and "metrics.jsonl" in notes[0] and "skipped.jsonl" in notes[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_the_launcher_refuses_before_starting_any_rank(tmp_path: Path, runner) -> None:  # noqa: ANN001
    from speechft.cli.app import app

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 2))
    run = tmp_path / "run"
    _earlier_run(run)
    result = runner.invoke(
        app,
        ["train", "--profile", "small-data", "--model-dir", str(tmp_path / "model"), "--train", str(train), "--output-dir", str(run), "--nproc-per-node", "2"],
    )
    assert result.exit_code == 2, result.output
    assert "already holds an earlier run" in result.output and "--resume auto" in result.output
    assert "starting 2 rank(s)" not in result.output


def test_ranks_carry_the_launchers_decision(tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.train.distributed import World
    from speechft.train.loop import share_run
    from speechft.train.run_dir import RESOLVED_CONFIG, read_run, settled, write_run

    run = tmp_path / "run"
    run.mkdir()
    launched = _request(Path("m"), Path("t.jsonl"), run, "optim.lr=3e-4", overwrite=True, resume="auto", command="speechft train --overwrite")
    launched = replace(launched, train=(TrainSource(Path("t.jsonl")), TrainSource(Path("g.jsonl"), 0.2)), val=Path("v.jsonl"), allow_missing=True)
    write_run(settled(launched))
    request = read_run(run)
    # What the launcher decided travels: the config, the sources and weights, a resolved resume point, the checked directory.
    assert request.output_dir_checked and request.resume == "off" and request.overwrite
    assert request.config == launched.config and request.train == launched.train and request.val == launched.val
    assert (request.model_dir, request.allow_missing, request.command) == (Path("m"), True, "speechft train --overwrite")
    assert "rerun with --profile" in (run / RESOLVED_CONFIG).read_text(encoding="utf-8")
    # A rank given that request does not look at the directory again: an --overwrite is not repeated.
    (run / "metrics.jsonl").write_text('{"kind": "data"}\n', encoding="utf-8")
    assert share_run(request, World(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))) == request
    assert (run / "metrics.jsonl").exists()


def test_a_run_directory_without_run_json_names_the_fix(tmp_path: Path) -> None:
    from speechft.train.run_dir import read_run

    with pytest.raises(InputError, match=r"run\.json: not found.*filesystem every node sees"):
        read_run(tmp_path)


def test_the_resume_hint_drops_overwrite() -> None:
    from speechft.train.faults import resume_command

    assert resume_command("speechft train --output-dir run --overwrite") == "speechft train --output-dir run --resume auto"


# ---------------------------------------------------------------------------------- skipped data


def test_the_skip_summary_counts_utterances_by_reason() -> None:
    from speechft.train.faults import skip_problem

    records = [(f"u{index}", f"audio unreadable: Error opening 'u{index}.wav'", f"train.jsonl:{index + 1}") for index in range(5)]
    records += [("u0", "audio unreadable: again in epoch 2", "train.jsonl:1"), ("long", "4000 tokens > data.max_sample_tokens 3500", "train.jsonl:9")]
    assert skip_problem(records, 1000, 0.05) is None  # 6 of 1000
    message = skip_problem(records, 100, 0.05, full_list=Path("run/skipped.jsonl"))
    assert message is not None
    assert message.startswith("6 of 100 training utterances (6.0%) were skipped, more than data.max_skip_fraction 0.05")
    assert "5 x audio unreadable: u0 (train.jsonl:1), u1 (train.jsonl:2), u2 (train.jsonl:3), ..." in message
    assert "1 x N tokens > data.max_sample_tokens N: long (train.jsonl:9)" in message
    assert "run/skipped.jsonl" in message and "no model.pt was written" in message
    everything = skip_problem(records, 6, 1.0)
    assert everything is not None and everything.startswith("every one of the 6 training utterances was skipped")


@pytest.mark.slow
def test_a_run_whose_audio_is_all_unreadable_exits_non_zero_without_a_model(tiny_dir: Path, tmp_path: Path, runner) -> None:  # noqa: ANN001
    from speechft.cli.app import app

    train = write_jsonl(tmp_path / "train.jsonl", [_unreadable(tmp_path, f"bad{index}") for index in range(4)])
    output = tmp_path / "run"
    arguments = ["train", "--profile", "small-data", "--model-dir", str(tiny_dir), "--train", str(train), "--output-dir", str(output), "--quiet"]
    result = runner.invoke(app, [*arguments, "data.num_workers=0", "validation.held_out_fraction=0", "max_epochs=3"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "epoch 1 made no optimizer step: 4 of 4 training utterances were skipped" in text
    assert "4 x audio unreadable: bad0" in text and str(output / "skipped.jsonl") in text
    assert not (output / "model.pt").exists()
    assert {json.loads(line)["key"] for line in (output / "skipped.jsonl").read_text(encoding="utf-8").splitlines()} == {f"bad{index}" for index in range(4)}


@pytest.mark.slow
def test_lines_skipped_while_reading_stop_the_run_before_training(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.train.loop import run_training

    lines = make_corpus(tmp_path / "wav", 6)
    nobang = chatml_line("nobang", Path(lines[0]["messages"][1]["content"].split("!")[1].split("<|")[0]), "one", bang=False, seconds=0.8)
    train = write_jsonl(tmp_path / "train.jsonl", [*lines, nobang])
    with pytest.raises(TrainingError, match=r"1 of 7 training utterances \(14\.3%\) were skipped") as caught:
        run_training(_request(tiny_dir, train, tmp_path / "run"))
    assert "nobang" in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_too_many_unreadable_samples_stop_after_the_first_epoch_and_a_raised_limit_resumes(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.train.checkpoint import list_checkpoints
    from speechft.train.loop import run_training

    train = write_jsonl(tmp_path / "train.jsonl", [*make_corpus(tmp_path / "wav", 6), _unreadable(tmp_path, "corrupt")])
    output = tmp_path / "run"
    settings = ("validation.held_out_fraction=0", "max_epochs=2")
    with pytest.raises(TrainingError, match=r"1 of 7 training utterances \(14\.3%\) were skipped, more than data\.max_skip_fraction 0\.05") as caught:
        run_training(_request(tiny_dir, train, output, *settings))
    assert "rerun with --resume auto" in str(caught.value) and "--overwrite" in str(caught.value)
    assert not (output / "model.pt").exists()
    assert [c.step for c in list_checkpoints(output)] == [4]  # the first epoch is kept
    result = run_training(_request(tiny_dir, train, output, *settings, "data.max_skip_fraction=0.2", resume="auto"))
    assert result.steps == 8 and result.skipped_samples == 1
    assert (output / "model.pt").exists()


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_needs_resume_or_overwrite(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechft.train.loop import run_training

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 6))
    output = tmp_path / "run"
    first = run_training(_request(tiny_dir, train, output, "max_steps=2"))
    assert first.steps == 2 and "held out of the training data" in first.validation
    summary = json.loads((output / "train_summary.json").read_text(encoding="utf-8"))
    assert "1 utterances held out of the training data" in summary["validation"]
    data_record = json.loads((output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert data_record["kind"] == "data" and data_record["val_source"] == "held-out" and data_record["train_utterances"] == 5
    assert "not trained on" in capsys.readouterr().err.replace("\n", " ")

    with pytest.raises(UsageError, match="already holds an earlier run"):
        run_training(_request(tiny_dir, train, output, "max_steps=2"))
    (output / "checkpoints" / "step-000999").mkdir()  # what an earlier, longer run would have left
    (output / "notes.txt").write_text("mine", encoding="utf-8")
    again = run_training(_request(tiny_dir, train, output, "max_steps=1", overwrite=True))
    assert again.steps == 1
    assert sorted(path.name for path in (output / "checkpoints").iterdir()) == ["step-000001"]
    assert (output / "notes.txt").exists()
    assert len([line for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if '"kind": "data"' in line]) == 1


# ----------------------------------------------------------------- one filesystem for every rank


def _marker_rank(rank: int, store: str, directories: list[str], results: list[str]) -> None:
    import torch.distributed as dist

    from speechft.train.distributed import World
    from speechft.train.output_dir import check_shared_output_dir

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        check_shared_output_dir(Path(directories[rank]), World(rank, rank, 2, torch.device("cpu")), wait_s=2.0)
        outcome = "ok"
    except TrainingError as error:
        outcome = str(error)
    finally:
        dist.destroy_process_group()
    Path(results[rank]).write_text(json.dumps({"outcome": outcome}), encoding="utf-8")


def _two_ranks(tmp_path: Path, directories: list[Path]) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    results = [str(tmp_path / f"rank{rank}.json") for rank in range(2)]
    ranks = [context.Process(target=_marker_rank, args=(rank, str(tmp_path / "store"), [str(d) for d in directories], results)) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
        assert process.exitcode == 0
    return [json.loads(Path(result).read_text(encoding="utf-8")) for result in results]


@pytest.mark.distributed
def test_ranks_that_share_the_output_dir_pass_and_leave_no_marker(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    outcomes = _two_ranks(tmp_path, [shared, shared])
    assert [o["outcome"] for o in outcomes] == ["ok", "ok"]
    assert list(shared.iterdir()) == []


@pytest.mark.distributed
@pytest.mark.parametrize("stale", [False, True])
def test_a_rank_that_cannot_see_rank_0s_marker_fails_within_seconds_naming_its_host(tmp_path: Path, stale: bool) -> None:
    from speechft.train.output_dir import SHARED_MARKER

    node0, node1 = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    node0.mkdir(parents=True)
    node1.mkdir(parents=True)
    if stale:  # the same path on another node, holding a marker an earlier run left behind
        (node1 / SHARED_MARKER).write_text("0" * 32, encoding="utf-8")
    rank0, rank1 = _two_ranks(tmp_path, [node0, node1])
    message = rank1["outcome"]
    assert f"rank 1 on host {socket.gethostname()}" in message and str(node1) in message
    assert "--output-dir must be on a filesystem every node sees (NFS, Lustre...)" in message
    assert ("another run's token" if stale else "it is not there") in message
    # Rank 0 stops with the failing rank's reason, not with a collective timeout of its own.
    assert rank0["outcome"] == message
    assert not (node0 / SHARED_MARKER).exists()


@pytest.mark.distributed
def test_two_launched_ranks_overwrite_an_earlier_run_once(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 9))
    output = tmp_path / "run"
    output.mkdir()
    _earlier_run(output)
    arguments = [
        sys.executable,
        "-m",
        "speechft",
        "train",
        "--profile",
        "small-data",
        "--model-dir",
        str(tiny_dir),
        "--train",
        str(train),
        "--output-dir",
        str(output),
        "--quiet",
        "--overwrite",
        "--nproc-per-node",
        "2",
        "data.num_workers=0",
        "data.max_utterances_per_batch=1",
        "max_steps=2",
        "validation.max_new_tokens=2",
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("--overwrite: removed") == 1
    assert sorted(path.name for path in (output / "checkpoints").iterdir()) == ["step-000002"]
    assert (output / "notes.txt").exists() and (output / "model.pt").read_bytes() != b"weights"


def test_a_val_file_with_no_usable_utterance_is_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.model.build import load_model
    from speechft.train.corpus import prepare_data

    train = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 3))
    val = write_jsonl(tmp_path / "val.jsonl", [_unreadable(tmp_path, "v0")])
    with pytest.raises(InputError, match=r"--val .*val\.jsonl: no utterance could be used \(audio unreadable"):
        prepare_data(_request(tiny_dir, train, tmp_path / "run", val=val), load_model(tiny_dir))


def test_a_dry_run_reports_and_fails_when_reading_already_lost_too_much(tiny_dir: Path, tmp_path: Path, runner) -> None:  # noqa: ANN001
    from speechft.cli.app import app

    lines = make_corpus(tmp_path / "wav", 4)
    nobang = chatml_line("nobang", Path(lines[0]["messages"][1]["content"].split("!")[1].split("<|")[0]), "one", bang=False, seconds=0.8)
    train = write_jsonl(tmp_path / "train.jsonl", [*lines, nobang])
    result = runner.invoke(app, ["train", "--profile", "small-data", "--model-dir", str(tiny_dir), "--train", str(train), "--dry-run", "data.num_workers=0"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "dry run: nothing was trained" in text and "validation: 1 utterances held out of the training data" in text
    assert "1 of 5 training utterances (20.0%) were skipped" in text and "1 x user turn has no '!' before the audio path: nobang" in text
