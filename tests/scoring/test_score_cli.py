"""`speechft score` end to end through the Typer app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from speechft.cli.app import app

DATA = Path(__file__).resolve().parents[1] / "data" / "score"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_single_hypothesis_writes_compute_wer_report(runner, tmp_path):
    output = tmp_path / "out" / "cer.txt"
    result = runner.invoke(app, ["score", str(DATA / "ref.txt"), str(DATA / "hyp.txt"), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "Overall" in result.stdout and "%WER 28.21 [ 11 / 39, 1 ins, 1 del, 9 sub ]" in result.stdout
    assert "Worst" in result.stdout
    report = output.read_text(encoding="utf-8")
    assert report.startswith("utt: a01\nWER: 16.67 % N=6 Cor=6 Sub=0 Del=0 Ins=1\n")
    assert "SER -> 83.33 % N=6 Cor=1 Err=5 ML=1 MH=0" in report
    # The extra hypothesis is reported on stderr.
    assert "1 hypotheses" in result.stderr and "a99" in result.stderr


def test_missing_hypotheses_are_reported_loudly(runner, tmp_path):
    reference = _write(tmp_path / "ref.txt", [f"k{index} 一 二" for index in range(8)])
    hypothesis = _write(tmp_path / "hyp.txt", ["k0 一 二", "k1 一"])
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["score", str(reference), str(hypothesis), "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "6 of 8 reference utterances have no hypothesis" in result.stderr
    assert "k2, k3, k4, k5, k6, ... (1 more)" in result.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    system = data["systems"][0]
    assert system["missing_keys"] == [f"k{index}" for index in range(2, 8)]
    assert system["overall"]["deletions"] == 13
    assert system["overall"]["n"] == 16
    assert system["utterances"][2] == {
        "key": "k2",
        "missing": True,
        "n": 2,
        "correct": 0,
        "substitutions": 0,
        "deletions": 2,
        "insertions": 0,
        "errors": 2,
        "error_rate": 1.0,
    }


def test_json_contents(runner, tmp_path):
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["score", str(DATA / "ref.txt"), str(DATA / "hyp.txt"), "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["comparisons"] == []
    assert "deletion" in data["tie_breaking"]
    system = data["systems"][0]
    assert system["extra_keys"] == ["a99"]
    assert system["overall"]["errors"] == 11
    assert set(system["by_class"]) == {"Chinese", "English", "Japanese", "Number", "Other"}
    assert [utterance["key"] for utterance in system["utterances"]] == ["a01", "a02", "a03", "a04", "a05", "a06"]
    assert system["sentences"] == {"n": 6, "correct": 1, "wrong": 5, "error_rate": 5 / 6}


def test_empty_reference_with_hypothesis_counts_as_errors(runner, tmp_path):
    reference = _write(tmp_path / "ref.txt", ["a", "b 好"])
    hypothesis = _write(tmp_path / "hyp.txt", ["a 多 余", "b 好"])
    output = tmp_path / "cer.txt"
    result = runner.invoke(app, ["score", str(reference), str(hypothesis), "-o", str(output)])
    assert result.exit_code == 0, result.output
    report = output.read_text(encoding="utf-8")
    assert "Overall -> 200.00 % N=1 Cor=1 Sub=0 Del=0 Ins=2" in report
    assert "SER -> 50.00 % N=2 Cor=1 Err=1 ML=0 MH=0" in report


def test_several_hypotheses_are_compared(runner, tmp_path):
    reference = _write(tmp_path / "ref.txt", [f"k{index} 今 天 天 气 很 好" for index in range(40)])
    (tmp_path / "base").mkdir()
    (tmp_path / "tuned").mkdir()
    base = _write(tmp_path / "base" / "out.txt", [f"k{index} 今 天 天 汽 很 {'好' if index % 2 else '号'}" for index in range(40)])
    tuned = _write(tmp_path / "tuned" / "out.txt", [f"k{index} 今 天 天 气 很 {'好' if index % 3 else '号'}" for index in range(40)])
    report = tmp_path / "report.json"
    outputs = [tmp_path / "base.cer.txt", tmp_path / "tuned.cer.txt"]
    argv = ["score", str(reference), str(base), str(tuned), "--json", str(report), "--seed", "3", "--bootstrap", "200"]
    argv += ["-o", str(outputs[0]), "-o", str(outputs[1])]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    # Same file names in different folders are told apart by their folder.
    assert "base/out.txt" in result.stdout and "tuned/out.txt" in result.stdout
    assert "Against the first hypothesis" in result.stdout and "baseline" in result.stdout
    assert "Overall -> 25.00 %" in outputs[0].read_text(encoding="utf-8")
    assert "Overall -> 5.83 %" in outputs[1].read_text(encoding="utf-8")
    data = json.loads(report.read_text(encoding="utf-8"))
    (comparison,) = data["comparisons"]
    assert comparison["baseline"] == "base/out.txt" and comparison["candidate"] == "tuned/out.txt"
    assert comparison["absolute_change"] < 0 and comparison["significant"]
    assert comparison["bootstrap_resamples"] == 200 and comparison["seed"] == 3
    low, high = comparison["interval"]
    assert low <= comparison["absolute_change"] <= high < 0
    # The same seed gives the same interval.
    again = tmp_path / "again.json"
    argv[argv.index(str(report))] = str(again)
    assert runner.invoke(app, argv).exit_code == 0
    assert json.loads(again.read_text(encoding="utf-8"))["comparisons"] == data["comparisons"]


def test_output_count_must_match_hypotheses(runner, tmp_path):
    result = runner.invoke(app, ["score", str(DATA / "ref.txt"), str(DATA / "hyp.txt"), str(DATA / "hyp.txt"), "-o", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "one --output per HYP" in result.stderr


def test_output_must_not_overwrite_an_input(runner):
    result = runner.invoke(app, ["score", str(DATA / "ref.txt"), str(DATA / "hyp.txt"), "-o", str(DATA / "ref.txt")])
    assert result.exit_code == 2


def test_missing_file_and_duplicate_key_exit_1(runner, tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path / "none.txt"), str(DATA / "hyp.txt")])
    assert result.exit_code == 1 and "not found" in result.stderr
    duplicate = _write(tmp_path / "dup.txt", ["a 一", "a 二"])
    result = runner.invoke(app, ["score", str(DATA / "ref.txt"), str(duplicate)])
    assert result.exit_code == 1 and "duplicate key 'a'" in result.stderr


def test_empty_reference_file_exits_1(runner, tmp_path):
    reference = _write(tmp_path / "ref.txt", [])
    result = runner.invoke(app, ["score", str(reference), str(DATA / "hyp.txt")])
    assert result.exit_code == 1 and "no utterances" in result.stderr


def test_char_option(runner, tmp_path):
    reference = _write(tmp_path / "ref.txt", ["a hello 3"])
    hypothesis = _write(tmp_path / "hyp.txt", ["a helo 3"])
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["score", str(reference), str(hypothesis), "--char", "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "%CER 16.67 [ 1 / 6, 0 ins, 1 del, 0 sub ]" in result.stdout
    assert json.loads(report.read_text(encoding="utf-8"))["systems"][0]["by_character"] is True


def test_help_explains_char():
    result = subprocess.run([sys.executable, "-m", "speechft", "score", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "--char" in result.stdout and "characters" in result.stdout


def test_score_imports_no_heavy_module(tmp_path):
    probe = (
        "import sys\n"
        "from speechft.cli.app import app\n"
        "try:\n"
        f"    app(['score', {str(DATA / 'ref.txt')!r}, {str(DATA / 'hyp.txt')!r}, {str(DATA / 'hyp.txt')!r},"
        " '--bootstrap', '10'], prog_name='speechft')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted(m for m in ('torch', 'transformers', 'funasr', 'torchaudio') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
