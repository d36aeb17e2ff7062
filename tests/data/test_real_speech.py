"""Human recordings in many formats (../shared/real-speech, see its README): every file but the
headerless .raw loads at the length the manifest gives, and prep + decode keep all of them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from speechft.data import audio

REAL_SPEECH = Path(__file__).resolve().parents[3] / "shared" / "real-speech"
RAW_KEY = "en-psx-goforward-raw"

pytestmark = pytest.mark.skipif(
    not (REAL_SPEECH / "manifest.tsv").exists(), reason=f"{REAL_SPEECH} is absent (the shared real-speech corpus is not checked out beside the repository)"
)


def manifest() -> list[dict[str, str]]:
    with open(REAL_SPEECH / "manifest.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_every_file_loads_at_its_manifest_duration() -> None:
    rows = manifest()
    assert len(rows) == 42
    for row in rows:
        path = str(REAL_SPEECH / row["path"])
        if row["key"] == RAW_KEY:
            with pytest.raises(audio.AudioError, match="headerless raw PCM"):
                audio.load_audio(path)
            continue
        info = audio.read_info(path)
        assert (info.sample_rate, info.channels) == (int(row["sample_rate"]), int(row["channels"])), row["key"]
        samples = audio.load_audio(path)
        seconds = len(samples) / audio.MODEL_SAMPLE_RATE
        # The manifest rounds to milliseconds; mp3 decoders may differ by some encoder padding.
        tolerance = 0.03 if "mp3" in row["format"] else 0.002
        assert abs(seconds - float(row["duration_s"])) <= tolerance, (row["key"], seconds, row["duration_s"])
        # What prep will write as speech_length is what training will find in the audio.
        assert abs(audio.fbank_frames_of(len(samples)) - info.fbank_frames) <= 1, row["key"]


def _absolute_lists(directory: Path) -> tuple[Path, Path, set[str]]:
    scp_lines, text_lines = [], []
    for scp_name, text_name in (("wav.scp", "text"), ("extra.wav.scp", "extra.text")):
        for line in (REAL_SPEECH / scp_name).read_text(encoding="utf-8").splitlines():
            key, relative = line.split(maxsplit=1)
            scp_lines.append(f"{key} {REAL_SPEECH / relative}")
        text_lines += (REAL_SPEECH / text_name).read_text(encoding="utf-8").splitlines()
    scp = directory / "wav.scp"
    scp.write_text("\n".join(scp_lines) + "\n", encoding="utf-8")
    text = directory / "text"
    text.write_text("\n".join(text_lines) + "\n", encoding="utf-8")
    return scp, text, {line.split(maxsplit=1)[0] for line in scp_lines}


@pytest.mark.slow
def test_prep_and_decode_keep_everything_but_the_raw_file(tiny_dir: Path, tmp_path: Path, runner) -> None:
    from speechft.cli.app import app

    scp, text, keys = _absolute_lists(tmp_path)
    assert len(keys) == 42
    out = tmp_path / "real.jsonl"
    result = runner.invoke(app, ["prep", "--scp", str(scp), "--text", str(text), "--out", str(out), "--model-dir", str(tiny_dir), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {record["key"] for record in records} == keys - {RAW_KEY}
    rejects = [line.split("\t") for line in (tmp_path / "real.rejects.tsv").read_text(encoding="utf-8").splitlines()]
    assert [(key, reason) for key, reason, _ in rejects] == [(RAW_KEY, audio.UNREADABLE_AUDIO)]
    assert "headerless raw PCM" in rejects[0][2]

    hypotheses = tmp_path / "hyp.txt"
    result = runner.invoke(
        app, ["decode", "--model-dir", str(tiny_dir), "--jsonl", str(out), "--output", str(hypotheses), "--max-new-tokens", "8", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    lines = hypotheses.read_text(encoding="utf-8").splitlines()
    assert [line.split("\t", 1)[0] for line in lines] == [record["key"] for record in records]
    assert not (tmp_path / "decode_errors.tsv").exists()
