"""Train the bundled tiny Fun-ASR-Nano (`examples/tiny-nano/`) from scratch on domain A.

    python examples/make_tiny_nano.py                     # synthesise domain A, train, write examples/tiny-nano
    python examples/make_tiny_nano.py --corpus /tmp/corpus --work /tmp/tiny-nano-work

Steps, all with speechft's own commands and library:
1. `examples/make_corpus.py --domain-a-train 6000` synthesises domain A with espeak-ng (unless
   `--corpus` already holds `domain-a/train`).
2. A randomly initialised tiny directory in the official layout (`build_tiny_model_dir`: encoder
   96-dim x 3 blocks, adaptor stacking 8 frames, 2-layer Qwen3 of hidden 96, byte-level BPE of 400
   tokens trained on the prompts and domain-A transcripts).
3. The utterances are dealt, by a seeded draw independent of their content, to the prompt variants
   the released model knows, and each group goes through `speechft prep` with the options that
   write its prompt: half `语音转写：` (`--itn on`, written form), a quarter
   `语音转写，不进行文本规整：` (`--itn off`, with English digit strings spelled out as spoken),
   a quarter the language forms `语音转写成英文：` / `语音转写成中文：` (`--language`). The model
   thus understands every prompt prep and decode write, and none of them tells it what was said.
   A tenth of the `语音转写：` group is held out for validation.
4. `speechft train --profile examples/tiny-nano-pretrain.yaml` trains every module.
5. The run's model files (not its prompt record: the official release has none) are copied to
   `examples/tiny-nano/`.

Only step 1 needs espeak-ng and sox. The settings are fixed, so a rerun on the same machine gives
the same model up to floating-point nondeterminism of thread scheduling.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from make_corpus import ENGLISH_DIGITS  # noqa: E402  (this script's own folder)

from speechft.testing.tiny_model import build_tiny_model_dir  # noqa: E402

MODEL_FILES = ("config.yaml", "configuration.json", "model.pt", "Qwen3-0.6B")
# (group, share of the utterances, prep options); the verbatim group's English digit strings are spelled out.
PROMPT_GROUPS = (
    ("normalised", 0.50, ["--itn", "on"]),
    ("verbatim", 0.25, ["--itn", "off"]),
    ("language", 0.25, ["--itn", "on"]),  # --language en or zh, by the transcript's script
)


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def speechft(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "speechft", *arguments]


def spoken(transcript: str) -> str:
    """The verbatim form of a domain-A transcript: English digit strings as words."""
    return " ".join(ENGLISH_DIGITS[int(d)] for d in transcript) if transcript.isdigit() else transcript


def read_table(path: Path) -> dict[str, str]:
    rows = (line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def write_group(directory: Path, keys: list[str], audio: dict[str, str], text: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    (directory / "wav.scp").write_text("".join(f"{k} {audio[k]}\n" for k in keys), encoding="utf-8")
    (directory / "text").write_text("".join(f"{k} {text[k]}\n" for k in keys), encoding="utf-8")
    return directory


def prep_groups(domain_a: Path, model_dir: Path, work: Path, seed: int = 0) -> tuple[list[Path], Path]:
    """Deal the utterances to the prompt groups and prep each; return the train jsonls and the val jsonl."""
    audio, text = read_table(domain_a / "wav.scp"), read_table(domain_a / "text")
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {name: [] for name, _, _ in PROMPT_GROUPS}
    for key in audio:
        draw, bound = rng.random(), 0.0
        for name, share, _ in PROMPT_GROUPS:
            bound += share
            if draw < bound or name == PROMPT_GROUPS[-1][0]:
                groups[name].append(key)
                break
    train, val = [], work / "a-val.jsonl"
    for name, _, options in PROMPT_GROUPS:
        keys = groups[name]
        if name == "language":
            by_language = {"en": [k for k in keys if text[k].isascii()], "zh": [k for k in keys if not text[k].isascii()]}
            for language, subset in by_language.items():
                data = write_group(work / "groups" / f"{name}-{language}", subset, audio, text)
                out = work / f"a-train-{name}-{language}.jsonl"
                run(
                    speechft(
                        "prep",
                        "--scp",
                        str(data / "wav.scp"),
                        "--text",
                        str(data / "text"),
                        "--model-dir",
                        str(model_dir),
                        "--out",
                        str(out),
                        "--language",
                        language,
                        *options,
                    )
                )
                train.append(out)
            continue
        targets = {k: spoken(text[k]) for k in keys} if name == "verbatim" else text
        data = write_group(work / "groups" / name, keys, audio, targets)
        out = work / f"a-train-{name}.jsonl"
        extra = ["--val-fraction", "0.1", "--val-out", str(val)] if name == "normalised" else []
        run(speechft("prep", "--scp", str(data / "wav.scp"), "--text", str(data / "text"), "--model-dir", str(model_dir), "--out", str(out), *options, *extra))
        train.append(out)
    return train, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/speechft-corpus"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/speechft-tiny-nano"))
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "tiny-nano")
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "tiny-nano-pretrain.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = parser.parse_args(argv)

    domain_a = args.corpus / "domain-a" / "train"
    if not (domain_a / "wav.scp").exists():
        run([sys.executable, str(REPO / "examples" / "make_corpus.py"), "--out", str(args.corpus), "--domain-a-train", "6000"])
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)

    transcripts = list(read_table(domain_a / "text").values())
    initial = build_tiny_model_dir(args.work / "init", seed=0, tokenizer_corpus=[*transcripts, *map(spoken, transcripts)])
    train, val = prep_groups(domain_a, initial, args.work)
    run(
        speechft(
            "train",
            "--profile",
            str(args.config),
            "--model-dir",
            str(initial),
            "--train",
            *map(str, train),
            "--val",
            str(val),
            "--output-dir",
            str(args.work / "run"),
            *args.overrides,
        )
    )

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    for name in MODEL_FILES:
        source = args.work / "run" / name
        if source.is_dir():
            shutil.copytree(source, args.out / name)
        else:
            shutil.copy2(source, args.out / name)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
