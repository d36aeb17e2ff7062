"""The whole speechft flow on the bundled example, on a laptop CPU (`make demo`).

The bundled tiny Fun-ASR-Nano (`examples/tiny-nano/`, trained on "domain A": English digit
strings, English commands and Chinese digit strings read by a few espeak-ng voices) meets
"domain B": the same kind of content read by voices and accents it never heard, faster. The demo
runs the guide's flow with the commands a user would type, echoing each one:

    prep -> decode (baseline) -> train --profile small-data (domain B + domain-A replay)
         -> decode (fine-tuned) -> normalize -> score (before/after with a 95% CI)

and writes `out/demo/report.json` with the CERs, then checks its own targets: domain-B CER at least
30% relatively lower after fine-tuning, domain-A CER not more than 5 points worse.

    python examples/demo.py [--out out/demo] [--quick]

`--quick` trains for a few steps only (a smoke test of the pipeline; targets are not checked).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "tiny-nano"
DATA = REPO / "examples" / "data"
RELATIVE_GAIN_TARGET = 0.30
DOMAIN_A_TOLERANCE = 0.05  # absolute CER


def run(*arguments: str) -> None:
    """Echo and run one speechft command, as a user would type it."""
    shown = " ".join(shlex.quote(a) if not a.startswith(str(REPO)) else shlex.quote(str(Path(a).relative_to(REPO))) for a in arguments)
    print(f"\n\033[1m$ speechft {shown}\033[0m", flush=True)
    subprocess.run([sys.executable, "-m", "speechft", *arguments], check=True, cwd=REPO)


def read_cer(report: Path, system_index: int) -> float:
    data = json.loads(report.read_text(encoding="utf-8"))
    overall = data["systems"][system_index]["overall"]
    return float(overall["error_rate"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    parser.add_argument("--quick", action="store_true", help="a few training steps only; targets not checked")
    args = parser.parse_args(argv)
    if not (MODEL / "model.pt").exists():
        print(
            f"The bundled tiny model ({MODEL.relative_to(REPO)}) is not part of this version yet, so the demo "
            "cannot run. examples/make_tiny_nano.py trains one (it needs espeak-ng and sox for its corpus).",
            file=sys.stderr,
        )
        return 0
    started = time.monotonic()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    data, model = out / "data", str(MODEL)

    # 1. Kaldi-style data dirs -> training jsonl (domain B with a validation split, domain-A replay)
    run("prep", "--scp", str(DATA / "domain-b/train/wav.scp"), "--text", str(DATA / "domain-b/train/text"),
        "--model-dir", model, "--out", str(data / "b-train.jsonl"), "--val-fraction", "0.1", "--val-out", str(data / "b-val.jsonl"))
    run("prep", "--scp", str(DATA / "domain-a/replay/wav.scp"), "--text", str(DATA / "domain-a/replay/text"),
        "--model-dir", model, "--out", str(data / "a-replay.jsonl"))

    # 2. Baseline: the base model on both test sets
    for domain in ("a", "b"):
        run("decode", "--model-dir", model, "--scp", str(DATA / f"domain-{domain}/test/wav.scp"), "--output", str(out / f"base/{domain}-test.txt"))

    # 3. Fine-tune the adaptor on domain B, replaying some domain A so the model does not forget it
    overrides = ["max_steps=6", "validation.max_utterances=8"] if args.quick else []
    run("train", "--profile", "small-data", "--model-dir", model, "--train", str(data / "b-train.jsonl"), f"{data / 'a-replay.jsonl'}:0.5",
        "--val", str(data / "b-val.jsonl"), "--output-dir", str(out / "run"), "--quiet",
        "max_epochs=12", "optim.lr=3e-3", "data.max_utterances_per_batch=16", *overrides)

    # 4. The fine-tuned model on both test sets (it decodes with the prompt it was trained with)
    for domain in ("a", "b"):
        run("decode", "--model-dir", str(out / "run"), "--scp", str(DATA / f"domain-{domain}/test/wav.scp"), "--output", str(out / f"tuned/{domain}-test.txt"))

    # 5. Normalise references and hypotheses as the guide does, 6. score before vs after
    for domain in ("a", "b"):
        run("normalize", str(DATA / f"domain-{domain}/test/text"), str(out / f"ref/{domain}-test.norm"))
        for system in ("base", "tuned"):
            run("normalize", str(out / f"{system}/{domain}-test.txt"), str(out / f"{system}/{domain}-test.norm"))
        run("score", str(out / f"ref/{domain}-test.norm"), str(out / f"base/{domain}-test.norm"), str(out / f"tuned/{domain}-test.norm"),
            "--output", str(out / f"base/{domain}-cer.txt"), "--output", str(out / f"tuned/{domain}-cer.txt"),
            "--json", str(out / f"score-{domain}.json"))

    report = {
        "baseline_cer": read_cer(out / "score-b.json", 0),
        "finetuned_cer": read_cer(out / "score-b.json", 1),
        "domain_a_cer_before": read_cer(out / "score-a.json", 0),
        "domain_a_cer_after": read_cer(out / "score-a.json", 1),
        "seconds": round(time.monotonic() - started, 1),
        "curves": str(out / "run" / "curves.png"),
    }
    relative_gain = 1 - report["finetuned_cer"] / report["baseline_cer"] if report["baseline_cer"] else 0.0
    report["relative_gain"] = round(relative_gain, 4)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"\ndomain B CER {report['baseline_cer']:.1%} -> {report['finetuned_cer']:.1%} ({relative_gain:.0%} relative); "
        f"domain A CER {report['domain_a_cer_before']:.1%} -> {report['domain_a_cer_after']:.1%}; "
        f"{report['seconds']:.0f} s. Report: {out / 'report.json'}, curves: {report['curves']}"
    )
    if args.quick:
        return 0
    failures = []
    if relative_gain < RELATIVE_GAIN_TARGET:
        failures.append(f"domain-B CER fell {relative_gain:.0%}, target at least {RELATIVE_GAIN_TARGET:.0%}")
    if report["domain_a_cer_after"] - report["domain_a_cer_before"] > DOMAIN_A_TOLERANCE:
        failures.append(f"domain-A CER rose by more than {DOMAIN_A_TOLERANCE:.0%} absolute")
    for failure in failures:
        print(f"\033[31mdemo target missed: {failure}\033[0m", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
