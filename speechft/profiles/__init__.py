"""The shipped training profiles (the YAML files beside this module) and the guide's data-size rule.

Kept out of `speechft.train` on purpose: `speechft prep` recommends a profile, and a wheel ships
the files, without importing the trainer.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from speechft.errors import ConfigError

# One per data-size rule of the guide; `--profile auto` chooses among these.
GUIDE_PROFILES = ("small-data", "medium-data", "large-data")
# Shipped besides the guide's rules, chosen by name only (auto never picks them, and they have no alias).
OTHER_PROFILES = ("llm-lora",)
PROFILES = GUIDE_PROFILES + OTHER_PROFILES
# The names users know from the guide's advice, one per guide profile.
PROFILE_ALIASES = {"adaptor-only": "small-data", "encoder+adaptor": "medium-data", "full": "large-data"}
# The Fun-ASR guide: < 1000 h train the adaptor; < 5000 h encoder + adaptor; > 10000 h everything.
SMALL_DATA_MAX_HOURS = 1000.0
MEDIUM_DATA_MAX_HOURS = 5000.0
LARGE_DATA_MIN_HOURS = 10000.0


def profiles_dir() -> Path:
    """The folder of shipped profiles: package data, so it exists in an installed wheel as in a checkout."""
    folder = resources.files(__name__)
    # Every rank of a run and the resolved config name the profile by path, so it must be a real file;
    # a zipped install (zipimport) would hand back a path inside the archive instead.
    if not isinstance(folder, Path) or not folder.is_dir():
        raise ConfigError(
            f"the shipped profiles are not readable as files ({folder}); install speechft as plain files "
            "(pip install speechft, not a zipped egg) or pass --profile path/to/profile.yaml"
        )
    return folder


def shipped_profile(name: str) -> str | None:
    """The shipped profile `name` or its alias stands for (`adaptor-only` -> `small-data`), else None."""
    if name in PROFILES:
        return name
    return PROFILE_ALIASES.get(name)


def profile_for_hours(hours: float) -> tuple[str, str]:
    """The guide's profile for this much training audio, and why."""
    if hours < SMALL_DATA_MAX_HOURS:
        return "small-data", f"{hours:.1f} h < {SMALL_DATA_MAX_HOURS:.0f} h: train the adaptor only"
    if hours < MEDIUM_DATA_MAX_HOURS:
        return "medium-data", f"{hours:.1f} h < {MEDIUM_DATA_MAX_HOURS:.0f} h: train encoder + adaptor"
    if hours <= LARGE_DATA_MIN_HOURS:
        return "medium-data", (
            f"{hours:.1f} h lies between the guide's rules (< {MEDIUM_DATA_MAX_HOURS:.0f} h encoder + adaptor, "
            f"> {LARGE_DATA_MIN_HOURS:.0f} h everything); medium-data is the safe choice, large-data may pay off "
            f"near {LARGE_DATA_MIN_HOURS:.0f} h"
        )
    return "large-data", f"{hours:.1f} h > {LARGE_DATA_MIN_HOURS:.0f} h: train everything"
