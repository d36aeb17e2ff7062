"""The whole speechft flow on the bundled example, on a laptop CPU (`make demo`).

The bundled tiny Fun-ASR-Nano (`examples/tiny-nano/`, trained on "domain A": English digit
strings, English commands and Chinese digit strings read by 75 espeak-ng voices) meets "domain B":
the same kind of content read faster by voices and accents it never heard. The demo runs the
guide's flow with the commands a user would type, echoing each one:

    prep -> decode (baseline) -> train --profile small-data, then medium-data (domain B + domain-A replay)
         -> decode (each fine-tune) -> normalize -> score (base vs each fine-tune, 95% CI)

and writes `out/demo/report.json` with the CERs (`baseline_cer`, `finetuned_cer`,
`domain_a_cer_before`, `domain_a_cer_after`: the medium-data fine-tune; every profile under
`profiles`), then checks its targets on the medium-data fine-tune: domain-B CER at least 30%
relatively lower, domain-A CER not more than 5 points worse. The adaptor-only (small-data)
fine-tune is shown beside it; on this ~1 M-parameter model it gains less and forgets more.

    python examples/demo.py [--out out/demo] [--quick] [--model-dir DIR]

`--quick` runs the same flow on a handful of utterances per set with a few training steps (a smoke
test of the pipeline; targets are not checked).
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
QUICK_UTTERANCES = 6
# The guide's profiles for small data, with learning rates for a ~1 M-parameter model.
PROFILES = {"small-data": "3e-3", "medium-data": "1e-3"}
# The fine-tune the targets are checked on: on the tiny model, adaptor-only (small-data) gains about
# 30% on domain B but costs domain A several points; encoder + adaptor gains more and keeps A.
CHECKED_PROFILE = "medium-data"
SETS = ("domain-a/test", "domain-a/replay", "domain-b/train", "domain-b/test")


def run(*arguments: str) -> None:
    """Echo and run one speechft command, as a user would type it."""
    shown = " ".join(shlex.quote(a) if not a.startswith(str(REPO)) else shlex.quote(str(Path(a).relative_to(REPO))) for a in arguments)
    print(f"\n\033[1m$ speechft {shown}\033[0m", flush=True)
    subprocess.run([sys.executable, "-m", "speechft", *arguments], check=True, cwd=REPO)


def read_cer(report: Path, system_index: int) -> float:
    data = json.loads(report.read_text(encoding="utf-8"))
    overall = data["systems"][system_index]["overall"]
    return float(overall["error_rate"])


def subset(source: Path, target: Path, count: int) -> None:
    """The first `count` utterances of a Kaldi data dir, audio paths made absolute."""
    target.mkdir(parents=True)
    lines = (source / "wav.scp").read_text(encoding="utf-8").splitlines()[:count]
    keys = [line.split(maxsplit=1)[0] for line in lines]
    scp = "".join(f"{key} {(REPO / line.split(maxsplit=1)[1]).resolve()}\n" for key, line in zip(keys, lines))
    (target / "wav.scp").write_text(scp, encoding="utf-8")
    text = dict(line.split(maxsplit=1) for line in (source / "text").read_text(encoding="utf-8").splitlines())
    (target / "text").write_text("".join(f"{key} {text[key]}\n" for key in keys), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    parser.add_argument("--quick", action="store_true", help="a few utterances and training steps only; targets not checked")
    parser.add_argument("--model-dir", type=Path, default=MODEL, help="base model (default: the bundled tiny model)")
    args = parser.parse_args(argv)
    if not (args.model_dir / "model.pt").exists():
        print(
            f"{args.model_dir / 'model.pt'} not found. The bundled tiny model is part of the repository "
            "(restore it with `git checkout examples/tiny-nano`); examples/make_tiny_nano.py retrains it.",
            file=sys.stderr,
        )
        return 1
    started = time.monotonic()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True)
    data, model = out / "data", str(args.model_dir.resolve())
    if args.quick:
        sets_dir = out / "data" / "quick"
        for name in SETS:
            subset(DATA / name, sets_dir / name, QUICK_UTTERANCES)
    else:
        sets_dir = DATA

    # 1. Kaldi-style data dirs -> training jsonl (domain B with a validation split, domain-A replay).
    #    The bundled transcripts are written-form text (digits as digits): --itn on asks for it.
    run(
        "prep",
        "--scp",
        str(sets_dir / "domain-b/train/wav.scp"),
        "--text",
        str(sets_dir / "domain-b/train/text"),
        "--itn",
        "on",
        "--model-dir",
        model,
        "--out",
        str(data / "b-train.jsonl"),
        "--val-fraction",
        "0.1",
        "--val-out",
        str(data / "b-val.jsonl"),
    )
    run(
        "prep",
        "--scp",
        str(sets_dir / "domain-a/replay/wav.scp"),
        "--text",
        str(sets_dir / "domain-a/replay/text"),
        "--itn",
        "on",
        "--model-dir",
        model,
        "--out",
        str(data / "a-replay.jsonl"),
    )

    # 2. Baseline: the base model on both test sets
    for domain in ("a", "b"):
        run("decode", "--model-dir", model, "--scp", str(sets_dir / f"domain-{domain}/test/wav.scp"), "--output", str(out / f"base/{domain}-test.txt"))

    # 3. Fine-tune on domain B with each profile, replaying domain A so the model does not forget it,
    # 4. and decode both test sets with the result (it decodes with the prompt it was trained with)
    quick = ["max_steps=6", "validation.max_utterances=8"] if args.quick else []
    for profile, lr in PROFILES.items():
        run(
            "train",
            "--profile",
            profile,
            "--model-dir",
            model,
            "--train",
            str(data / "b-train.jsonl"),
            f"{data / 'a-replay.jsonl'}:1",
            "--val",
            str(data / "b-val.jsonl"),
            "--output-dir",
            str(out / profile),
            "--quiet",
            "max_epochs=20",
            f"optim.lr={lr}",
            "data.max_utterances_per_batch=16",
            *quick,
        )
        for domain in ("a", "b"):
            run(
                "decode",
                "--model-dir",
                str(out / profile),
                "--scp",
                str(sets_dir / f"domain-{domain}/test/wav.scp"),
                "--output",
                str(out / f"{profile}/{domain}-test.txt"),
            )

    # 5. Normalise references and hypotheses as the guide does, 6. score: base vs each fine-tune
    systems = ("base", *PROFILES)
    for domain in ("a", "b"):
        run("normalize", str(sets_dir / f"domain-{domain}/test/text"), str(out / f"ref/{domain}-test.norm"))
        outputs = []
        for system in systems:
            run("normalize", str(out / f"{system}/{domain}-test.txt"), str(out / f"{system}/{domain}-test.norm"))
            outputs += ["--output", str(out / f"{system}/{domain}-cer.txt")]
        run(
            "score",
            str(out / f"ref/{domain}-test.norm"),
            *(str(out / f"{system}/{domain}-test.norm") for system in systems),
            *outputs,
            "--json",
            str(out / f"score-{domain}.json"),
        )

    checked = systems.index(CHECKED_PROFILE)
    report = {
        "baseline_cer": read_cer(out / "score-b.json", 0),
        "finetuned_cer": read_cer(out / "score-b.json", checked),
        "domain_a_cer_before": read_cer(out / "score-a.json", 0),
        "domain_a_cer_after": read_cer(out / "score-a.json", checked),
        "finetuned_profile": CHECKED_PROFILE,
        "profiles": {
            profile: {"domain_b_cer": read_cer(out / "score-b.json", index), "domain_a_cer": read_cer(out / "score-a.json", index)}
            for index, profile in enumerate(systems)
            if profile != "base"
        },
        "seconds": round(time.monotonic() - started, 1),
        "curves": {profile: str(out / profile / "curves.png") for profile in PROFILES},
    }
    relative_gain = 1 - report["finetuned_cer"] / report["baseline_cer"] if report["baseline_cer"] else 0.0
    report["relative_gain"] = round(relative_gain, 4)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    for profile, figures in report["profiles"].items():
        gain = 1 - figures["domain_b_cer"] / report["baseline_cer"] if report["baseline_cer"] else 0.0
        print(
            f"{profile:12} domain B CER {report['baseline_cer']:.1%} -> {figures['domain_b_cer']:.1%} ({gain:.0%} relative); "
            f"domain A CER {report['domain_a_cer_before']:.1%} -> {figures['domain_a_cer']:.1%}"
        )
    print(f"{report['seconds']:.0f} s. Report: {out / 'report.json'}, curves: {out}/<profile>/curves.png")
    if args.quick:
        return 0
    failures = []
    if relative_gain < RELATIVE_GAIN_TARGET:
        failures.append(f"{CHECKED_PROFILE}: domain-B CER fell {relative_gain:.0%}, target at least {RELATIVE_GAIN_TARGET:.0%}")
    if report["domain_a_cer_after"] - report["domain_a_cer_before"] > DOMAIN_A_TOLERANCE:
        failures.append(f"{CHECKED_PROFILE}: domain-A CER rose by more than {DOMAIN_A_TOLERANCE:.0%} absolute")
    for failure in failures:
        print(f"\033[31mdemo target missed: {failure}\033[0m", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
