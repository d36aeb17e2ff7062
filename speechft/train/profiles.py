"""The guide's data-size rule and the shipped training profiles (`configs/*.yaml`).

Light on purpose: `speechft prep` recommends a profile without importing the trainer.
"""

from __future__ import annotations

from pathlib import Path

PROFILES = ("small-data", "medium-data", "large-data")
# The Fun-ASR guide: < 1000 h train the adaptor; < 5000 h encoder + adaptor; > 10000 h everything.
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
            f"{hours:.1f} h lies between the guide's rules (< {MEDIUM_DATA_MAX_HOURS:.0f} h encoder + adaptor, "
            f"> {LARGE_DATA_MIN_HOURS:.0f} h everything); medium-data is the safe choice, large-data may pay off "
            f"near {LARGE_DATA_MIN_HOURS:.0f} h"
        )
    return "large-data", f"{hours:.1f} h > {LARGE_DATA_MIN_HOURS:.0f} h: train everything"
