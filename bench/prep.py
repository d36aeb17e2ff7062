"""Benchmark `speechft prep` against upstream Fun-ASR's tools/scp2jsonl.py on the same corpus.

    .venv/bin/python bench/prep.py                                   # speechft only, 20k wavs
    git -C FUN_ASR_CHECKOUT show HEAD:tools/scp2jsonl.py > /tmp/scp2jsonl.py
    .venv/bin/python bench/prep.py --upstream-scp2jsonl /tmp/scp2jsonl.py   # both, outputs compared

The corpus is generated deterministically in a temp dir: N wavs of 1-3 s (16 kHz mono PCM-16),
half Chinese and half English transcripts, absolute paths in wav.scp. The tokenizer is a tiny one
in the Qwen3 layout unless --tokenizer points at a real Qwen3-0.6B folder.

Two rates per tool, each the median of --runs fresh processes:
- `call`: the conversion call alone (tokenizer loading included, Python imports excluded): speechft's
  `prepare()`, upstream's `main_hydra()` (its hub tokenizer pointed at the local one, its defaults
  otherwise: a thread pool of os.cpu_count() workers);
- `process`: the whole command, `python -m speechft prep ...` / `python scp2jsonl.py ...`.
Then `speech_length` and `text_length` are compared per utterance (upstream writes no key and
completion order, so lines are matched by audio path). Upstream computes milliseconds in floating
point and comes out one frame short for a few exact lengths (e.g. 16080 samples = 1005 ms); such
differences are counted separately and checked against the exact integer formula.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]
WORDS = (
    "speech model data train test audio word time year people way day man thing woman life child world "
    "school state family student group country problem hand part place case week company system program"
).split()


def generate(directory: Path, count: int, seed: int = 11) -> dict[str, int]:
    """Write `count` wavs plus wav.scp and text; returns frames per key."""
    import numpy as np
    import soundfile

    rng = random.Random(seed)
    wav_dir = directory / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    frames: dict[str, int] = {}
    noise = (np.random.default_rng(seed).standard_normal(3 * 16000) * 800).astype(np.int16)
    with open(directory / "wav.scp", "w", encoding="utf-8") as scp, open(directory / "text", "w", encoding="utf-8") as text:
        for index in range(count):
            key = f"utt{index:06d}"
            length = rng.randint(16000, 48000)
            path = wav_dir / f"{key}.wav"
            soundfile.write(path, noise[:length], 16000, subtype="PCM_16")
            frames[key] = length
            if rng.random() < 0.5:
                transcript = "".join(rng.choice(HAN) for _ in range(rng.randint(6, 24)))
            else:
                transcript = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
            scp.write(f"{key} {path}\n")
            text.write(f"{key} {transcript}\n")
    return frames


def make_tokenizer(directory: Path) -> Path:
    sys.path.insert(0, str(REPOSITORY))
    from speechft.testing.tiny_tokenizer import build_tiny_tokenizer, write_qwen_pipeline

    rng = random.Random(3)
    corpus = ["".join(rng.choice(HAN) for _ in range(40)) for _ in range(300)]
    corpus += [" ".join(rng.choice(WORDS) for _ in range(20)) for _ in range(300)]
    build_tiny_tokenizer(directory, corpus, vocab_size=4000)
    return write_qwen_pipeline(directory)


# --- children: one timed conversion call each ------------------------------------------------


def child_speechft(arguments: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPOSITORY))
    from speechft.data.prep.options import PrepOptions
    from speechft.data.prep.pipeline import prepare

    options = PrepOptions(
        scp=Path(arguments.data) / "wav.scp",
        text=Path(arguments.data) / "text",
        out=Path(arguments.out),
        tokenizer_dir=Path(arguments.tokenizer),
        jobs=arguments.jobs,
        max_reject_fraction=0.0,
    )
    started = time.perf_counter()
    summary = prepare(options)
    elapsed = time.perf_counter() - started
    Path(arguments.result).write_text(json.dumps({"call_s": elapsed, "kept": summary.kept}))


def child_upstream(arguments: argparse.Namespace) -> None:
    # Hydra wants the script inside a package: the parent placed a copy in <data>/upstream_tools/.
    sys.path.insert(0, arguments.data)
    module = importlib.import_module("upstream_tools.scp2jsonl")
    original = module.AutoTokenizer
    tokenizer_dir = arguments.tokenizer

    class LocalAutoTokenizer:  # the script loads "Qwen/Qwen3-0.6B" from a hub; point it at the local copy
        @staticmethod
        def from_pretrained(name: str, *args: object, **kwargs: object) -> object:
            return original.from_pretrained(tokenizer_dir, *args, **kwargs)

    module.AutoTokenizer = LocalAutoTokenizer
    data = Path(arguments.data)
    sys.argv = [
        module.__file__,
        f"++scp_file={data}/wav.scp",
        f"++transcript_file={data}/text",
        f"++jsonl_file={arguments.out}",
        f"hydra.run.dir={data}/hydra-{os.getpid()}",
    ]
    log = os.open(arguments.result + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    saved = os.dup(1), os.dup(2)
    os.dup2(log, 1)
    os.dup2(log, 2)
    started = time.perf_counter()
    try:
        module.main_hydra()
    finally:
        elapsed = time.perf_counter() - started
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    Path(arguments.result).write_text(json.dumps({"call_s": elapsed}))


# --- parent ------------------------------------------------------------------------------------


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - started
    if completed.returncode:
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(command)}\n{completed.stderr.decode()[-3000:]}")
    return elapsed


def lengths_by_path(path: Path) -> dict[str, tuple[int, int]]:
    result = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        audio = record["messages"][1]["content"].split("<|startofspeech|>!")[1].split("<|endofspeech|>")[0]
        result[audio] = (record["speech_length"], record["text_length"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="utterances to generate")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool (median reported)")
    parser.add_argument("--jobs", type=int, default=0, help="speechft --jobs (0: every core)")
    parser.add_argument("--upstream-scp2jsonl", help="path of upstream tools/scp2jsonl.py (outside this repository)")
    parser.add_argument("--upstream-python", default=sys.executable, help="python with hydra, modelscope, tqdm")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: a tiny one in the Qwen3 layout)")
    parser.add_argument("--workdir", help="where to generate the corpus (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus")
    parser.add_argument("--child", choices=("speechft", "upstream"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child == "speechft":
        return child_speechft(arguments)
    if arguments.child == "upstream":
        return child_upstream(arguments)

    work = Path(tempfile.mkdtemp(prefix="bench-prep-", dir=arguments.workdir))
    try:
        started = time.perf_counter()
        frames = generate(work, arguments.n)
        tokenizer = Path(arguments.tokenizer) if arguments.tokenizer else make_tokenizer(work / "tokenizer")
        print(
            f"generated {arguments.n} wavs ({sum(frames.values()) / 16000 / 3600:.2f} h) in "
            f"{time.perf_counter() - started:.1f} s; tokenizer {tokenizer}; {os.cpu_count()} cores",
            flush=True,
        )
        env = dict(os.environ, PYTHONPATH=str(REPOSITORY) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        rates: dict[str, dict[str, list[float]]] = {}

        def run_tool(name: str, python: str, process_command: list[str]) -> Path:
            rates[name] = {"call": [], "process": []}
            out = work / f"{name}.jsonl"
            for run in range(arguments.runs):
                result = work / f"{name}-{run}.json"
                timed(
                    [
                        python,
                        __file__,
                        "--child",
                        name,
                        "--data",
                        str(work),
                        "--out",
                        str(out),
                        "--result",
                        str(result),
                        "--tokenizer",
                        str(tokenizer),
                        "--jobs",
                        str(arguments.jobs),
                        *(["--upstream-scp2jsonl", arguments.upstream_scp2jsonl] if name == "upstream" else []),
                    ],
                    env,
                )
                call_s = json.loads(result.read_text())["call_s"]
                process_s = timed(process_command, env)
                rates[name]["call"].append(arguments.n / call_s)
                rates[name]["process"].append(arguments.n / process_s)
                print(
                    f"{name} run {run + 1}: call {call_s:.2f} s = {arguments.n / call_s:,.0f} utt/s; "
                    f"process {process_s:.2f} s = {arguments.n / process_s:,.0f} utt/s",
                    flush=True,
                )
            return out

        ours = run_tool(
            "speechft",
            sys.executable,
            [
                sys.executable,
                "-m",
                "speechft",
                "prep",
                "--scp",
                str(work / "wav.scp"),
                "--text",
                str(work / "text"),
                "--out",
                str(work / "speechft-cli.jsonl"),
                "--tokenizer",
                str(tokenizer),
                "--jobs",
                str(arguments.jobs),
                "--max-reject-fraction",
                "0",
            ],
        )
        summary = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in rates.items()}
        print(f"speechft: {summary['speechft']['call']:,.0f} utt/s (call), {summary['speechft']['process']:,.0f} utt/s (process)")
        if not arguments.upstream_scp2jsonl:
            return
        script = Path(arguments.upstream_scp2jsonl).resolve()
        package = work / "upstream_tools"
        package.mkdir()
        (package / "__init__.py").write_text("")
        shutil.copyfile(script, package / "scp2jsonl.py")
        upstream_tokenizer_patch = work / "run_upstream.py"
        # The whole-process run of upstream needs the same tokenizer patch as the call run.
        upstream_tokenizer_patch.write_text(
            "import runpy, sys\n"
            f"sys.argv = [{str(__file__)!r}, '--child', 'upstream', '--data', {str(work)!r}, '--out', "
            f"{str(work / 'upstream-process.jsonl')!r}, '--result', {str(work / 'upstream-process.json')!r}, "
            f"'--tokenizer', {str(tokenizer)!r}, '--upstream-scp2jsonl', {str(script)!r}]\n"
            f"runpy.run_path({str(__file__)!r}, run_name='__main__')\n"
        )
        theirs = run_tool("upstream", arguments.upstream_python, [arguments.upstream_python, str(upstream_tokenizer_patch)])
        summary = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in rates.items()}

        mine, upstream = lengths_by_path(ours), lengths_by_path(theirs)
        key_of = {str(work / "wav" / f"{key}.wav"): key for key in frames}
        same = rounding = 0
        other: list[str] = []
        for path, (speech, text) in mine.items():
            if path not in upstream:
                other.append(f"{key_of.get(path, path)}: missing upstream")
                continue
            their_speech, their_text = upstream[path]
            if (speech, text) == (their_speech, their_text):
                same += 1
                continue
            samples = frames[key_of[path]]
            exact = 1 + (samples - 400) // 160
            float_formula = int(((samples / 16000) * 1000 - 25) // 10 + 1)
            if text == their_text and speech == exact and their_speech == float_formula:
                rounding += 1
            else:
                other.append(f"{key_of[path]}: speechft {speech}/{text}, upstream {their_speech}/{their_text}")
        print(
            f"lengths: {same} identical, {rounding} differ only by upstream's float rounding "
            f"(speechft = 1 + (samples - 400) // 160 exactly), {len(other)} other differences; "
            f"{len(mine)} speechft lines, {len(upstream)} upstream lines"
        )
        for line in other[:10]:
            print(f"  {line}")
        for kind in ("call", "process"):
            ratio = summary["speechft"][kind] / summary["upstream"][kind]
            print(f"{kind}: speechft {summary['speechft'][kind]:,.0f} utt/s, upstream {summary['upstream'][kind]:,.0f} utt/s, ratio {ratio:.1f}x")
    finally:
        if arguments.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
