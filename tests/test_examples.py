"""The embedded default: the bundled tiny model and data, and the demo pipeline that uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "tiny-nano"
DATA = REPO / "examples" / "data"
SETS = ("domain-a/test", "domain-a/replay", "domain-b/train", "domain-b/test")


def _table(path: Path) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines())


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_bundle_is_complete_and_small() -> None:
    for name in ("config.yaml", "model.pt", "configuration.json", "Qwen3-0.6B/config.json", "Qwen3-0.6B/tokenizer.json"):
        assert (MODEL / name).is_file(), name
    assert not (MODEL / "prompt.json").exists()  # the official release has no prompt record
    for name in SETS:
        audio, text = _table(DATA / name / "wav.scp"), _table(DATA / name / "text")
        assert list(audio) == list(text), name
        assert all((REPO / path).is_file() for path in audio.values()), name
    assert _size(MODEL) < 10 * 1024 * 1024
    assert _size(DATA) < 10 * 1024 * 1024


@pytest.mark.slow
def test_bundled_model_speechft_equals_automodel_and_knows_domain_a(tmp_path: Path) -> None:
    from funasr import AutoModel

    from speechft.model.build import load_model
    from speechft.model.generate import clean_text, greedy_decode

    audio, text = _table(DATA / "domain-a/test/wav.scp"), _table(DATA / "domain-a/test/text")
    keys = list(audio)[:4]
    waveforms = [sf.read(REPO / audio[key], dtype="float32")[0] for key in keys]
    bundle = load_model(MODEL, device="cpu")
    ours = greedy_decode(bundle, waveforms, ["语音转写："] * len(keys), max_new_tokens=40)
    reference = AutoModel(model=str(MODEL), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)
    wavs = []  # funasr's AutoModel reads file paths: the same samples as float wavs
    for key, waveform in zip(keys, waveforms):
        sf.write(tmp_path / f"{key}.wav", waveform, 16000, subtype="FLOAT")
        wavs.append(str(tmp_path / f"{key}.wav"))
    theirs = [clean_text(reference.generate(input=[w], max_length=40)[0]["text"]) for w in wavs]
    assert ours == theirs
    # a trained model, not random weights: most of domain A comes out right
    assert sum(hyp.replace(" ", "") == text[key].replace(" ", "") for key, hyp in zip(keys, ours)) >= 2


@pytest.mark.slow
def test_demo_quick_writes_every_artefact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--quick", "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for key in ("baseline_cer", "finetuned_cer", "domain_a_cer_before", "domain_a_cer_after", "seconds"):
        assert isinstance(report[key], float), key
        assert report[key] >= 0, key
    profiles = ("small-data", "medium-data")
    assert set(report["profiles"]) == set(profiles)
    for profile in profiles:
        assert (out / profile / "curves.png").read_bytes().startswith(b"\x89PNG")
        assert (out / profile / "model.pt").is_file() and (out / profile / "prompt.json").is_file()
    for domain in ("a", "b"):
        keys = list(_table(out / "data" / "quick" / f"domain-{domain}" / "test" / "text"))
        for system in ("base", *profiles):
            hyps = [line.split("\t")[0] for line in (out / system / f"{domain}-test.txt").read_text(encoding="utf-8").splitlines()]
            assert hyps == keys
            assert "Overall -> " in (out / system / f"{domain}-cer.txt").read_text(encoding="utf-8")
        score = json.loads((out / f"score-{domain}.json").read_text(encoding="utf-8"))
        assert len(score["systems"]) == 3
    for jsonl in ("b-train.jsonl", "a-replay.jsonl"):
        lines = (out / "data" / jsonl).read_text(encoding="utf-8").splitlines()
        assert lines and all(json.loads(line)["messages"][2]["role"] == "assistant" for line in lines)
    assert "$ OMP_NUM_THREADS=1 speechft train --profile small-data" in result.stdout
    assert "$ OMP_NUM_THREADS=1 speechft train --profile medium-data" in result.stdout
