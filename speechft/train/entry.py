"""What `speechft train` does with its options: choose the profile, load the config, run, report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speechft import console
from speechft.errors import UsageError
from speechft.train.config import load_config
from speechft.train.data import TrainSource, hours_of

PROFILES = ("small-data", "medium-data", "large-data")
# The Fun-ASR guide's rule: < 1000 h adaptor only; < 5000 h encoder + adaptor; > 10000 h everything.
SMALL_DATA_MAX_HOURS = 1000.0
MEDIUM_DATA_MAX_HOURS = 5000.0
LARGE_DATA_MIN_HOURS = 10000.0


def profiles_dir() -> Path:
    """The shipped `configs/` folder (beside the package in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "configs"


def profile_for_hours(hours: float) -> tuple[str, str]:
    """The guide's profile for this much training audio, and why."""
    if hours < SMALL_DATA_MAX_HOURS:
        return "small-data", f"{hours:.1f} h < {SMALL_DATA_MAX_HOURS:.0f} h: train the adaptor only"
    if hours < MEDIUM_DATA_MAX_HOURS:
        return "medium-data", f"{hours:.1f} h < {MEDIUM_DATA_MAX_HOURS:.0f} h: train encoder + adaptor"
    if hours <= LARGE_DATA_MIN_HOURS:
        return "medium-data", (
            f"{hours:.1f} h is between the guide's rules (< {MEDIUM_DATA_MAX_HOURS:.0f} h encoder + adaptor, "
            f"> {LARGE_DATA_MIN_HOURS:.0f} h everything); medium-data is the safe choice"
        )
    return "large-data", f"{hours:.1f} h > {LARGE_DATA_MIN_HOURS:.0f} h: train everything"


def resolve_profile(profile: str, train: Sequence[TrainSource]) -> tuple[Path, str, str]:
    """(YAML path, profile name, why) for `auto`, a shipped profile name, or a user YAML path."""
    if profile == "auto":
        hours = hours_of([source.path for source in train])
        name, why = profile_for_hours(hours)
        return profiles_dir() / f"{name}.yaml", name, f"--profile auto: {why} (from speech_length in the train jsonl)"
    if profile in PROFILES:
        return profiles_dir() / f"{profile}.yaml", profile, f"--profile {profile}"
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path, path.stem, f"--profile {path}"
    raise UsageError(f"--profile {profile!r}: use auto, {', '.join(PROFILES)} or a path to a YAML file")


def split_arguments(train: Sequence[str], extra: Sequence[str]) -> tuple[list[TrainSource], list[str]]:
    """Trailing arguments: `key=value` overrides, anything else one more `--train` file."""
    overrides = [item for item in extra if "=" in item and not item.endswith(".jsonl")]
    files = [*train, *(item for item in extra if item not in overrides)]
    if not files:
        raise UsageError("no training data: pass --train data/train.jsonl (more files may follow, optionally FILE:WEIGHT)")
    return [TrainSource.parse(item) for item in files], overrides


def train(
    *,
    profile: str,
    model_dir: Path,
    train_files: Sequence[str],
    extra: Sequence[str],
    output_dir: Path | None,
    val: Path | None,
    dry_run: bool,
    resume: str,
    allow_missing: bool,
    show_progress: bool,
) -> object:
    """Resolve options into a TrainRequest and run it; print the outcome on the consoles."""
    from speechft.train.loop import DryRunReport, TrainRequest, run_training

    sources, overrides = split_arguments(train_files, extra)
    if output_dir is None and not dry_run:
        raise UsageError("--output-dir is required (where checkpoints and the fine-tuned model go)")
    path, name, why = resolve_profile(profile, sources)
    console.err.print(f"profile {name}: {why}")
    config = load_config(path, overrides)
    request = TrainRequest(
        model_dir=model_dir,
        train=tuple(sources),
        output_dir=output_dir or Path("."),
        config=config,
        val=val,
        profile=name,
        dry_run=dry_run,
        resume=resume,
        allow_missing=allow_missing,
        show_progress=show_progress,
    )
    result = run_training(request)
    if not isinstance(result, DryRunReport):
        cer = "n/a" if result.best_val_cer is None else f"{result.best_val_cer:.2%}"
        console.out.print(
            f"trained {result.steps} steps in {result.seconds:.0f} s; model.pt from {', '.join(result.selected)} "
            f"(val CER {cer}); skipped samples: {result.skipped_samples}"
        )
        console.out.print(f"model directory: {result.output_dir}  (use it as --model-dir for `speechft decode`)")
    return result
