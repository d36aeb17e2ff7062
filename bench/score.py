"""Benchmark `speechft score` against the PyPI `compute-wer` (the guide's tool) and `jiwer`.

    .venv/bin/python bench/score.py                                     # speechft only
    .venv/bin/python bench/score.py --compare-python /tmp/bench-score/bin/python

`--compare-python` is a Python with `compute-wer` and `jiwer` installed (a separate virtualenv:
neither is a speechft dependency). Every tool runs as its own process on the same two files and
is timed wall-clock and in CPU seconds, start-up included; each writes its report the way a user would run it
(speechft and compute-wer write the per-utterance report file; jiwer computes the totals).

The input is generated deterministically: N utterance pairs of 15-25 Chinese characters, written
as the guide's normaliser writes them (characters separated by spaces), with about 10 % of the
reference characters substituted, deleted or followed by an insertion.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

COMPUTE_WER_SCRIPT = "import sys; from compute_wer.cli import main; sys.argv[0] = 'compute-wer'; main()"

# jiwer on the same files: pair by key in reference order (a missing hypothesis is empty), score
# the space-separated characters as words, print the totals.
JIWER_SCRIPT = """
import sys
import jiwer

def read(path):
    table = {}
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(None, 1)
            if fields:
                table[fields[0]] = fields[1].strip() if len(fields) > 1 else ""
    return table

references = read(sys.argv[1])
hypotheses = read(sys.argv[2])
keys = list(references)
output = jiwer.process_words([references[key] for key in keys], [hypotheses.get(key, "") for key in keys])
length = output.hits + output.substitutions + output.deletions
print(f"N={length} Sub={output.substitutions} Del={output.deletions} Ins={output.insertions}")
"""

OVERALL = re.compile(r"Overall -> [\d.]+ % N=(\d+) Cor=(\d+) Sub=(\d+) Del=(\d+) Ins=(\d+)")
JIWER_TOTALS = re.compile(r"N=(\d+) Sub=(\d+) Del=(\d+) Ins=(\d+)")


def generate(directory: Path, utterances: int, seed: int) -> tuple[Path, Path]:
    """Write ref.txt and hyp.txt; the same arguments always give the same files."""
    generator = random.Random(seed)
    alphabet = [chr(code) for code in range(0x4E00, 0x4E00 + 3500)]
    reference_lines: list[str] = []
    hypothesis_lines: list[str] = []
    for index in range(utterances):
        reference = generator.choices(alphabet, k=generator.randint(15, 25))
        hypothesis: list[str] = []
        for character in reference:
            draw = generator.random()
            if draw < 0.04:
                hypothesis.append(generator.choice(alphabet))  # substitution
            elif draw < 0.07:
                pass  # deletion
            elif draw < 0.10:
                hypothesis += [character, generator.choice(alphabet)]  # insertion
            else:
                hypothesis.append(character)
        key = f"BENCH{index:07d}"
        reference_lines.append(f"{key} {' '.join(reference)}\n")
        hypothesis_lines.append(f"{key} {' '.join(hypothesis)}\n")
    reference_path = directory / "ref.txt"
    hypothesis_path = directory / "hyp.txt"
    reference_path.write_text("".join(reference_lines), encoding="utf-8")
    hypothesis_path.write_text("".join(hypothesis_lines), encoding="utf-8")
    return reference_path, hypothesis_path


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    """User + system CPU seconds of the child: less sensitive than wall time to a busy machine."""
    stdout: str


def timed(command: list[str]) -> Run:
    """Run a command and time it; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall_s, cpu_s, result.stdout)


def fastest(command: list[str], repeat: int) -> Run:
    return min((timed(command) for _ in range(repeat)), key=lambda run: run.wall_s)


def overall_totals(report: Path) -> tuple[int, int]:
    """(N, S+D+I) from the `Overall ->` line of a compute-wer style report."""
    match = OVERALL.search(report.read_text(encoding="utf-8")[-2000:])
    if match is None:
        sys.exit(f"{report}: no `Overall ->` line")
    length, _, substitutions, deletions, insertions = (int(group) for group in match.groups())
    return length, substitutions + deletions + insertions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest (wall) counts")
    parser.add_argument("--compare-python", help="a Python with compute-wer and jiwer installed")
    parser.add_argument("--workdir", type=Path, help="where to write the inputs and reports (default: a temp dir)")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-score-") as temporary:
        directory = arguments.workdir or Path(temporary)
        directory.mkdir(parents=True, exist_ok=True)
        reference, hypothesis = generate(directory, arguments.utterances, arguments.seed)
        print(f"{arguments.utterances} utterance pairs in {directory}")

        runs: dict[str, Run] = {}
        speechft_report = directory / "speechft.cer.txt"
        command = [sys.executable, "-m", "speechft", "score", str(reference), str(hypothesis)]
        command += ["-o", str(speechft_report), "--worst", "0"]
        runs["speechft"] = fastest(command, arguments.repeat)
        speechft_totals = overall_totals(speechft_report)

        agree: dict[str, bool] = {}
        if arguments.compare_python:
            compute_wer_report = directory / "compute-wer.cer.txt"
            command = [arguments.compare_python, "-c", COMPUTE_WER_SCRIPT, str(reference), str(hypothesis)]
            command.append(str(compute_wer_report))
            runs["compute-wer"] = fastest(command, arguments.repeat)
            agree["compute-wer"] = overall_totals(compute_wer_report) == speechft_totals

            command = [arguments.compare_python, "-c", JIWER_SCRIPT, str(reference), str(hypothesis)]
            runs["jiwer"] = fastest(command, arguments.repeat)
            match = JIWER_TOTALS.search(runs["jiwer"].stdout)
            if match is None:
                sys.exit(f"jiwer printed no totals: {runs['jiwer'].stdout!r}")
            length, substitutions, deletions, insertions = (int(group) for group in match.groups())
            agree["jiwer"] = (length, substitutions + deletions + insertions) == speechft_totals

        print(f"speechft Overall: N={speechft_totals[0]} S+D+I={speechft_totals[1]}")
        print(f"{'tool':<12} {'wall s':>8} {'x speechft':>11} {'cpu s':>8} {'x speechft':>11}  totals agree (N, S+D+I)")
        for tool, run in runs.items():
            wall_ratio = run.wall_s / runs["speechft"].wall_s
            cpu_ratio = run.cpu_s / runs["speechft"].cpu_s
            agreement = "-" if tool == "speechft" else ("yes" if agree[tool] else "NO")
            print(f"{tool:<12} {run.wall_s:>8.2f} {wall_ratio:>10.1f}x {run.cpu_s:>8.2f} {cpu_ratio:>10.1f}x  {agreement}")


if __name__ == "__main__":
    main()
