"""Train the bundled tiny Fun-ASR-Nano (`examples/tiny-nano/`) from scratch on domain A.

    python examples/make_tiny_nano.py                     # synthesise domain A, train, write examples/tiny-nano
    python examples/make_tiny_nano.py --corpus /tmp/corpus --work /tmp/tiny-nano-work

Steps, all with speechft's own commands and library:
1. `examples/make_corpus.py --domain-a-train 2400` synthesises domain A with espeak-ng (unless
   `--corpus` already holds `domain-a/train`).
2. A randomly initialised tiny directory in the official layout (`build_tiny_model_dir`: encoder
   96-dim x 3 blocks, adaptor stacking 8 frames, 2-layer Qwen3 of hidden 96, byte-level BPE of 400
   tokens trained on the prompts and domain-A transcripts).
3. `speechft prep --itn on` writes the training jsonl (every line with `语音转写：`); a quarter of the lines are then given the language
   forms of the prompts (`语音转写成英文：` ...) so the model knows every variant prep and decode
   write.
4. `speechft train --profile examples/tiny-nano-pretrain.yaml` trains every module.
5. The run's model files (not its prompt record: the official release has none) are copied to
   `examples/tiny-nano/`.

Only step 1 needs espeak-ng and sox. The settings are fixed, so a rerun on the same machine gives
the same model up to floating-point nondeterminism of thread scheduling.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from speechft.data.prompts import PromptPolicy  # noqa: E402
from speechft.model.tiny import build_tiny_model_dir  # noqa: E402

MODEL_FILES = ("config.yaml", "configuration.json", "model.pt", "Qwen3-0.6B")
LANGUAGE_FORM_SHARE = 0.25


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def speechft(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "speechft", *arguments]


def add_language_forms(jsonl: Path, seed: int = 0) -> None:
    """Give a share of the lines the language form of their prompt (English or Chinese by script)."""
    rng = random.Random(seed)
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    rewritten = []
    for line in lines:
        record = json.loads(line)
        if rng.random() < LANGUAGE_FORM_SHARE:
            transcript = record["messages"][2]["content"]
            language = "en" if transcript.isascii() else "zh"
            user = record["messages"][1]["content"]
            audio = user[user.index("<|startofspeech|>") :]
            record["messages"][1]["content"] = PromptPolicy(language=language).prompt_for(transcript) + audio
        rewritten.append(json.dumps(record, ensure_ascii=False))
    jsonl.write_text("\n".join(rewritten) + "\n", encoding="utf-8")


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
        run([sys.executable, str(REPO / "examples" / "make_corpus.py"), "--out", str(args.corpus), "--domain-a-train", "2400"])
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)

    transcripts = [line.split(maxsplit=1)[1] for line in (domain_a / "text").read_text(encoding="utf-8").splitlines()]
    initial = build_tiny_model_dir(args.work / "init", seed=0, tokenizer_corpus=transcripts)
    train_jsonl, val_jsonl = args.work / "a-train.jsonl", args.work / "a-val.jsonl"
    run(speechft("prep", "--scp", str(domain_a / "wav.scp"), "--text", str(domain_a / "text"), "--model-dir", str(initial),
                 "--out", str(train_jsonl), "--val-fraction", "0.05", "--val-out", str(val_jsonl), "--itn", "on"))
    add_language_forms(train_jsonl)
    run(speechft("train", "--profile", str(args.config), "--model-dir", str(initial), "--train", str(train_jsonl),
                 "--val", str(val_jsonl), "--output-dir", str(args.work / "run"), *args.overrides))

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
