"""What each augmentation and early stopping do on the bundled example, per profile.

Runs the demo's flow (`examples/demo.py`: prep, baseline decode, fine-tune on domain B with
domain-A replay, decode, normalize, score) once per profile and variant:

    none            every augmentation off, no early stopping
    spec_augment    SpecAugment only
    speed           speed perturbation (0.9 / 1.0 / 1.1) only
    noise           additive noise only (synthetic noise written here: no MUSAN offline)
    early_stopping  no augmentation; validation.patience + validation.min_validations
    profile         the profile as shipped (what `make demo` runs)

two runs at a time, one CPU thread each, and writes `out/effects/effects.json` and the Markdown
table the README shows (`out/effects/effects.md`: domain-B and domain-A CER and seconds per run).

    python examples/effects.py [--out out/effects] [--profiles small-data medium-data] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo  # noqa: E402  (this script's own folder)

OFF = ["augment.spec_augment=false", "augment.speed=false", "augment.noise_dir=", "validation.patience=0", "validation.min_validations=0"]
EARLY_STOPPING = ["validation.patience=4", "validation.min_validations=20"]
# Runs trained at once, one CPU thread each (as `make demo` does): each run's seconds are measured
# while it shares the CPU with another.
SIDE_BY_SIDE = 2


def variants(noise_dir: Path) -> dict[str, list[str]]:
    return {
        "none": OFF,
        "spec_augment": [*OFF, "augment.spec_augment=true"],
        "speed": [*OFF, "augment.speed=true"],
        "noise": [*OFF, f"augment.noise_dir={noise_dir}"],
        "early_stopping": [*OFF, *EARLY_STOPPING],
        "profile": [],
    }


def write_noise(directory: Path, seconds: float = 6.0, seed: int = 0) -> Path:
    """White, pink and brown noise, mains hum and a babble-like modulated noise, 16 kHz."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    count = int(16000 * seconds)
    white = rng.standard_normal(count)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    frequencies = np.maximum(np.fft.rfftfreq(count, 1 / 16000), 1.0)
    pink = np.fft.irfft(spectrum / np.sqrt(frequencies), count)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(1600) / 1600, mode="same")  # no drift
    t = np.arange(count) / 16000
    hum = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t) + 0.1 * white
    babble = pink * (1 + np.sin(2 * np.pi * 3.1 * t) * np.sin(2 * np.pi * 0.7 * t))
    for name, signal in (("white", white), ("pink", pink), ("brown", brown), ("hum", hum), ("babble", babble)):
        sf.write(directory / f"{name}.flac", (0.3 * signal / np.max(np.abs(signal))).astype(np.float32), 16000)
    return directory


def training_seconds(run_dir: Path) -> float:
    return round(float(json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))["seconds"]), 1)


def table(results: dict, base: dict[str, float]) -> str:
    lines = [
        f"Base model: domain B {base['b']:.1%}, domain A {base['a']:.1%}.",
        "",
        "| profile | variant | domain-B CER | relative | domain-A CER | seconds | ended |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in results.items():
        profile, variant = name.split("/")
        gain = 1 - figures["b"] / base["b"] if base["b"] else 0.0
        lines.append(f"| {profile} | {variant} | {figures['b']:.1%} | {-gain:+.0%} | {figures['a']:.1%} | {figures['seconds']:.0f} | {figures['end_reason']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=demo.REPO / "out" / "effects")
    parser.add_argument("--profiles", nargs="+", default=list(demo.PROFILES), choices=list(demo.PROFILES))
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of: none spec_augment speed noise early_stopping profile")
    parser.add_argument("--quick", action="store_true", help="a few utterances and training steps only (a smoke test)")
    parser.add_argument("--score-only", action="store_true", help="score the runs already decoded in --out (e.g. of an interrupted run); train nothing")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out, model = args.out.resolve(), str(demo.MODEL)
    if args.score_only:
        systems = [f"{d.parent.name}/{d.name}" for d in sorted(out.glob("*/*")) if (d / "a-test.txt").exists() and (d / "b-test.txt").exists()]
        return report(out, demo.DATA, systems, variants(out / "noise"), started)
    sets_dir = demo.start(out, args.quick)
    every = variants(write_noise(out / "noise"))
    chosen = args.variants or list(every)
    unknown = sorted(set(chosen) - set(every))
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    demo.prepare(out, sets_dir, model)
    demo.decode_tests(out, sets_dir, model, "base")
    quick = ["max_steps=4", "validation.max_utterances=4"] if args.quick else []
    runs = {f"{profile}/{variant}": (profile, [*demo.PROFILES[profile], *every[variant], *quick]) for profile in args.profiles for variant in chosen}
    systems = list(runs)
    for first in range(0, len(systems), SIDE_BY_SIDE):
        batch = systems[first : first + SIDE_BY_SIDE]
        demo.fine_tune_side_by_side(out, model, {system: runs[system] for system in batch})
        for system in batch:
            demo.decode_tests(out, sets_dir, str(out / system), system)
    return report(out, sets_dir, systems, every, started)


def report(out: Path, sets_dir: Path, systems: list[str], every: dict[str, list[str]], started: float) -> int:
    """Score `systems` against the base model; write effects.json and effects.md. Seconds are each run's training time."""
    cers = demo.score(out, sets_dir, ["base", *systems])
    results = {system: {**cers[system], "seconds": training_seconds(out / system), "end_reason": demo.end_reason(out / system)} for system in systems}
    record = {"base": cers["base"], "runs": results, "overrides": every, "seconds": round(time.monotonic() - started, 1)}
    (out / "effects.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    markdown = table(results, cers["base"])
    (out / "effects.md").write_text(markdown, encoding="utf-8")
    print("\n" + markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
