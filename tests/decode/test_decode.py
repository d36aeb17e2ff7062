"""`speechft decode` on a tiny model directory: parity with funasr, prompts, errors, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_fixtures import make_talkative
from speech_fixtures import write_tone

from speechft.cli.app import app

torch = pytest.importorskip("torch")

UTTERANCES = 20
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def model_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_talkative(tiny_dir, tmp_path_factory.mktemp("talkative") / "model")


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("audio")
    lines = []
    for index in range(UTTERANCES):
        seconds = 0.4 + 0.17 * index  # 0.4 s .. 3.6 s: every batch mixes lengths
        path = write_tone(directory / f"u{index:02d}.wav", seconds, 180.0 + 37.0 * index, seed=index)
        lines.append(f"u{index:02d} {path}\n")
    scp = directory / "wav.scp"
    scp.write_text("".join(lines), encoding="utf-8")
    return scp


@pytest.fixture(scope="module")
def funasr_texts(model_dir: Path, scp: Path) -> dict[str, str]:
    """funasr's own AutoModel.generate, one utterance at a time, as upstream decode.py does."""
    from funasr import AutoModel

    from speechft.model.generate import clean_text

    reference = AutoModel(model=str(model_dir), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)
    texts = {}
    for line in scp.read_text(encoding="utf-8").splitlines():
        key, path = line.split()
        texts[key] = clean_text(reference.generate(input=[path], max_length=MAX_TOKENS)[0]["text"])
    return texts


def _read(path: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return {key: text for key, text in rows}


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 8])
def test_equals_funasr_generate(runner, model_dir, scp, funasr_texts, tmp_path, batch_size):
    output = tmp_path / "hyp.txt"
    result = runner.invoke(
        app,
        [
            "decode",
            "--model-dir",
            str(model_dir),
            "--scp",
            str(scp),
            "--output",
            str(output),
            "--batch-size",
            str(batch_size),
            "--max-new-tokens",
            str(MAX_TOKENS),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    texts = _read(output)
    assert list(texts) == list(funasr_texts)  # input order
    assert texts == funasr_texts
    assert sum(1 for text in texts.values() if text) >= UTTERANCES // 2


@pytest.mark.slow
def test_bad_audio_is_reported_and_exits_1(runner, model_dir, scp, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    bad_scp = tmp_path / "wav.scp"
    bad_scp.write_text(scp.read_text(encoding="utf-8").splitlines()[0] + f"\nmissing {tmp_path / 'nope.wav'}\nbroken {broken}\n", encoding="utf-8")
    output = tmp_path / "hyp.txt"
    result = runner.invoke(
        app, ["decode", "--model-dir", str(model_dir), "--scp", str(bad_scp), "--output", str(output), "--max-new-tokens", "4", "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert "2 utterance(s) could not be decoded" in result.stderr
    texts = _read(output)
    assert list(texts) == ["u00", "missing", "broken"] and texts["missing"] == texts["broken"] == ""
    errors = (tmp_path / "decode_errors.tsv").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in errors] == ["missing", "broken"]


@pytest.mark.slow
def test_trained_prompt_is_the_default_and_overrides_warn(runner, model_dir, scp, tmp_path):
    from speechft.data.prompts import PromptPolicy, PromptSidecar

    trained = tmp_path / "trained"
    import shutil

    shutil.copytree(model_dir, trained)
    sidecar = PromptSidecar(PromptPolicy(itn="off"), {"语音转写，不进行文本规整：": 10})
    (trained / "prompt.json").write_text(json.dumps(sidecar.to_json(), ensure_ascii=False), encoding="utf-8")
    one = tmp_path / "one.scp"
    one.write_text(scp.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    common = ["decode", "--model-dir", str(trained), "--scp", str(one), "--max-new-tokens", "2", "--device", "cpu"]
    result = runner.invoke(app, [*common, "--output", str(tmp_path / "a.txt")])
    assert result.exit_code == 0, result.output
    assert "语音转写，不进行文本规整：" in result.stderr and "warning" not in result.stderr
    result = runner.invoke(app, [*common, "--output", str(tmp_path / "b.txt"), "--language", "en"])
    assert result.exit_code == 0, result.output
    assert "语音转写成英文：" in result.stderr and "warning" in result.stderr


@pytest.mark.slow
def test_resume_after_partial_output(runner, model_dir, scp, funasr_texts, tmp_path):
    output = tmp_path / "hyp.txt"
    keys = list(funasr_texts)
    output.write_text("".join(f"{key}\t{funasr_texts[key]}\n" for key in keys[5:9]) + "u00\tpartial li", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "decode",
            "--model-dir",
            str(model_dir),
            "--scp",
            str(scp),
            "--output",
            str(output),
            "--max-new-tokens",
            str(MAX_TOKENS),
            "--device",
            "cpu",
            "--resume",
            "--batch-size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 kept from an earlier run" in result.stderr
    assert _read(output) == funasr_texts


def test_exactly_one_input(runner, tmp_path):
    result = runner.invoke(app, ["decode", "--model-dir", str(tmp_path), "--output", str(tmp_path / "o.txt")])
    assert result.exit_code == 2
    assert "exactly one of --scp or --jsonl" in result.stderr


def test_hotword_prompt_matches_upstream_layout():
    from speechft.decode.prompt import choose_prompt

    choice = choose_prompt(None, hotwords=["阿里巴巴", "通义"], language="en")
    assert choice.prompt.endswith("热词列表：[阿里巴巴, 通义]\n语音转写成英文：")
    assert choice.prompt.startswith("请结合上下文信息")
    assert choose_prompt(None).prompt == "语音转写："
    assert choose_prompt(None, no_itn=True).prompt == "语音转写，不进行文本规整："


@pytest.mark.slow
def test_tokens_per_second_bounds_each_row(model_dir, scp):
    """A looping model stops each row at 16 + seconds x rate tokens, not at max_new_tokens."""
    import soundfile

    from speechft.model.build import load_model
    from speechft.model.generate import greedy_decode

    bundle = load_model(model_dir)
    paths = [line.split()[1] for line in scp.read_text(encoding="utf-8").splitlines()]
    waveforms = [soundfile.read(paths[0], dtype="float32")[0], soundfile.read(paths[-1], dtype="float32")[0]]
    unbounded = greedy_decode(bundle, waveforms, ["语音转写："] * 2, max_new_tokens=60)
    bounded = greedy_decode(bundle, waveforms, ["语音转写："] * 2, max_new_tokens=60, tokens_per_second=1.0)
    # 0.4 s of audio: at most 17 tokens; 3.6 s: at most 20; the looping rows would go on to 60.
    assert all(u.startswith(b) and len(b) < len(u) for u, b in zip(unbounded, bounded))
    assert len(bounded[0]) < len(bounded[1])
    generous = greedy_decode(bundle, waveforms, ["语音转写："] * 2, max_new_tokens=60, tokens_per_second=1000.0)
    assert generous == unbounded
