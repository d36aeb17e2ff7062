"""What one prep run is asked to do (:class:`PrepOptions`), and where its outputs go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speechft.data import remote
from speechft.data.prompts import PromptPolicy
from speechft.errors import UsageError

ProgressCallback = Callable[[str, int, int], None]
"""`progress(stage, done, total)`: stages are `audio`, `tokens`, `segments`, `write`."""


@dataclass(frozen=True)
class PrepOptions:
    """Everything `prepare` needs; paths are used as given (relative to the working directory)."""

    scp: Path
    text: Path
    out: Path
    tokenizer_dir: Path
    policy: PromptPolicy = PromptPolicy()
    segments: Path | None = None
    audio_out: Path | None = None
    val_fraction: float = 0.0
    val_out: Path | None = None
    val_seed: int = 0
    rejects: Path | None = None
    jobs: int = 0  # 0: every core
    min_frames: int = 10
    max_frames: int = 12000
    max_tokens: int = 2048
    max_reject_fraction: float = 0.05
    url_timeout_s: float = remote.DEFAULT_URL_TIMEOUT_S
    url_retries: int = remote.DEFAULT_URL_RETRIES

    def validate(self) -> None:
        if str(self.out) == "-" or self.out.name in ("", ".") or self.out.is_dir():
            raise UsageError(f"--out must be a file path (got {self.out}); prep writes files beside it")
        if (self.segments is None) != (self.audio_out is None):
            raise UsageError("--segments and --audio-out go together: segments are cut into files under --audio-out")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise UsageError(f"--max-reject-fraction must be in [0, 1], got {self.max_reject_fraction}")
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise UsageError(f"need 1 <= --min-frames <= --max-frames, got {self.min_frames} and {self.max_frames}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.jobs < 0:
            raise UsageError(f"--jobs must be positive (0 = every core), got {self.jobs}")

    @property
    def stem(self) -> Path:
        name = self.out.name[: -len(".jsonl")] if self.out.name.endswith(".jsonl") else self.out.name
        return self.out.with_name(name)

    @property
    def rejects_path(self) -> Path:
        return self.rejects if self.rejects is not None else self.stem.with_name(self.stem.name + ".rejects.tsv")

    @property
    def summary_path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".summary.json")

    @property
    def val_path(self) -> Path | None:
        if self.val_fraction <= 0:
            return None
        return self.val_out if self.val_out is not None else self.stem.with_name(self.stem.name + ".val.jsonl")
