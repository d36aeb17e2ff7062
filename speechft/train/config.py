"""The training configuration: frozen dataclasses loaded strictly from YAML, with `key=value` overrides.

A profile (`speechft/profiles/small-data.yaml` ...) is plain data in this schema. Unknown keys and values of
the wrong type are errors naming the key and the file; overrides such as `optim.lr=1e-4` go
through the same conversion (YAML reads `1e-4` as a string, so values are converted by the
field's declared type, not by how YAML happened to parse them).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from speechft.errors import ConfigError
from speechft.train.typed import FieldError, Pattern, build, check

# Closed sets: the loader rejects anything else, naming the allowed values.
Module = Literal["encoder", "adaptor", "llm"]
Decay = Literal["cosine", "linear", "inverse_sqrt", "constant"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Strategy = Literal["auto", "ddp", "fsdp"]
Device = Annotated[str, Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N")]
Select = Annotated[str, Pattern(r"best|last|avg:[1-9][0-9]*", "best, last or avg:K")]


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay (upstream uses 0)."""
    betas: tuple[float, ...] = (0.9, 0.999)
    """AdamW betas."""
    grad_clip: float = 5.0
    """Clip the global gradient norm to this (0 disables)."""
    grad_accum_steps: int = 1
    """Batches whose gradients are summed before one optimizer step."""
    max_nonfinite_steps: int = 10
    """Abort after this many optimizer steps in a row with a non-finite loss or gradient (each one is skipped)."""

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", "must be > 0")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas", "must be two numbers in [0, 1)")
        check(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0")
        check(self.grad_accum_steps >= 1, "optim.grad_accum_steps", "must be >= 1")
        check(self.max_nonfinite_steps >= 1, "optim.max_nonfinite_steps", "must be >= 1")


@dataclass(frozen=True)
class ScheduleConfig:
    warmup_fraction: float = 0.05
    """Linear warmup over this fraction of all optimizer steps ..."""
    max_warmup_steps: int = 2500
    """... but never longer than this (upstream's fixed warmup)."""
    decay: Decay = "cosine"
    """After warmup: cosine | linear | inverse_sqrt | constant."""
    min_lr_ratio: float = 0.1
    """Cosine and linear decay end at lr * min_lr_ratio."""

    def __post_init__(self) -> None:
        check(0 <= self.warmup_fraction < 1, "schedule.warmup_fraction", "must be in [0, 1)")
        check(self.max_warmup_steps >= 0, "schedule.max_warmup_steps", "must be >= 0")
        check(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio", "must be in [0, 1]")


@dataclass(frozen=True)
class DataConfig:
    token_budget: int | Literal["auto"] = 6000
    """Most padded `speech_length + text_length` per batch (fbank frames + transcript tokens); auto: on a GPU the largest
    of 2000..64000 whose estimated peak memory fits it (the dry run prints the choice), on CPU 6000."""
    max_utterances_per_batch: int = 10
    """Most utterances per batch."""
    max_sample_tokens: int = 3500
    """Skip utterances whose `speech_length + text_length` exceeds this (35 s of audio by default)."""
    min_speech_frames: int = 10
    """Skip utterances shorter than this many fbank frames (0.1 s)."""
    sort_buffer: int = 1024
    """Utterances sorted by length together before batching (bigger: less padding, less randomness)."""
    num_workers: int = 2
    """Loader processes that read audio and compute features (0: in the training process)."""
    dither: float | None = None
    """Training dither of the fbank frontend; null keeps the model's frontend_conf (funasr's default 1.0)."""
    speech_buckets: tuple[int, ...] = ()
    """Pad each batch's feature axis up to the smallest of these sizes (LFR frames, 60 ms each) that fits, so batches come
    in a few shapes a GPU or torch.compile plans once; [] pads to the longest utterance (fastest on CPU)."""
    token_buckets: tuple[int, ...] = ()
    """The same for the LLM token axis (prompt + audio tokens + transcript); [] pads to the longest."""
    url_cache: str = "audio-cache"
    """Keep audio of http(s) manifest lines here after the first download (relative to --output-dir; absolute to share it
    between runs) so later epochs read it from disk; "" downloads it every epoch."""
    max_skip_fraction: float = 0.05
    """Stop the run (no model.pt) when more than this fraction of the training utterances is skipped (bad lines, lengths,
    unreadable audio); a run where all are skipped always stops."""

    def __post_init__(self) -> None:
        check(self.token_budget == "auto" or self.token_budget > 0, "data.token_budget", "must be > 0 or auto")
        check(self.max_utterances_per_batch >= 1, "data.max_utterances_per_batch", "must be >= 1")
        check(self.max_sample_tokens > 0, "data.max_sample_tokens", "must be > 0")
        check(self.sort_buffer >= 1, "data.sort_buffer", "must be >= 1")
        check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        check(self.dither is None or self.dither >= 0, "data.dither", "must be >= 0 or null")
        check(0 <= self.max_skip_fraction <= 1, "data.max_skip_fraction", "must be in [0, 1]")
        for name in ("speech_buckets", "token_buckets"):
            sizes = getattr(self, name)
            check(all(size > 0 for size in sizes) and list(sizes) == sorted(set(sizes)), f"data.{name}", "must be positive sizes in increasing order")


@dataclass(frozen=True)
class ValidationConfig:
    every_steps: int = 0
    """Also validate (and checkpoint) every this many optimizer steps; epochs always end with one (0: epoch ends only)."""
    max_utterances: int = 200
    """Validate on at most this many utterances: the first ones of --val, or the held-out slice (0: no limit)."""
    held_out_fraction: float = 0.05
    """Without --val: hold out this fraction of the training utterances for validation, chosen by a hash of the key and
    never trained on (at least 1 when there are 2 or more, at most max_utterances; 0: no validation)."""
    batch_size: int = 16
    """Utterances per greedy-decoding batch."""
    max_new_tokens: int = 0
    """Decoding bound; 0: twice the longest reference plus 10 tokens."""
    patience: int = 0
    """Early stopping: end the run after this many validations in a row without a lower CER than the best so far
    (0: train for max_epochs / max_steps)."""
    min_validations: int = 0
    """Validate at least this many times over the run: when epoch ends and every_steps would validate less often, the
    run validates every total_steps / min_validations steps instead, so a short run can pick its best step (0: off)."""

    def __post_init__(self) -> None:
        check(self.every_steps >= 0, "validation.every_steps", "must be >= 0")
        check(self.max_utterances >= 0, "validation.max_utterances", "must be >= 0")
        check(0 <= self.held_out_fraction <= 0.5, "validation.held_out_fraction", "must be in [0, 0.5]")
        check(self.batch_size >= 1, "validation.batch_size", "must be >= 1")
        check(self.max_new_tokens >= 0, "validation.max_new_tokens", "must be >= 0")
        check(self.patience >= 0, "validation.patience", "must be >= 0")
        check(self.min_validations >= 0, "validation.min_validations", "must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    spec_augment: bool = False
    """SpecAugment on the LFR features: frequency masks (the same mel bins in every stacked frame) and time masks."""
    freq_masks: int = 2
    """Frequency masks per utterance."""
    freq_mask_width: int = 10
    """Widest frequency mask, in mel bins (of 80)."""
    time_masks: int = 2
    """Time masks per utterance."""
    time_mask_width: int = 5
    """Widest time mask, in LFR frames (60 ms each), and never more than a fifth of the utterance."""
    speed: bool = False
    """Speed perturbation: each utterance, each epoch, plays at one of speed_factors (length and pitch change; batches
    are planned with the changed lengths)."""
    speed_factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    """Speed factors drawn with equal probability."""
    noise_dir: str = ""
    """Add noise from the audio files under this directory (MUSAN-style; searched recursively); "" adds none."""
    noise_probability: float = 0.5
    """Share of training samples that get noise."""
    noise_snr_db: tuple[float, ...] = (10.0, 20.0)
    """Signal-to-noise ratio range in dB, drawn uniformly."""
    gain_db: tuple[float, ...] = (0.0, 0.0)
    """Random gain range in dB, drawn uniformly ([0, 0]: none)."""

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            check(getattr(self, name) >= 0, f"augment.{name}", "must be >= 0")
        check(len(self.speed_factors) > 0 and all(0.5 <= f <= 2.0 for f in self.speed_factors), "augment.speed_factors", "must be factors in [0.5, 2]")
        check(0 <= self.noise_probability <= 1, "augment.noise_probability", "must be in [0, 1]")
        check(len(self.noise_snr_db) == 2 and self.noise_snr_db[0] <= self.noise_snr_db[1], "augment.noise_snr_db", "must be [low, high] in dB")
        check(len(self.gain_db) == 2 and self.gain_db[0] <= self.gain_db[1], "augment.gain_db", "must be [low, high] in dB")


@dataclass(frozen=True)
class CheckpointConfig:
    keep_last: int = 3
    """Checkpoints kept besides the best ones."""
    select: Select = "best"
    """What becomes the output model.pt: best (lowest val CER) | last | avg:K (mean of the K best)."""

    def __post_init__(self) -> None:
        check(self.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")

    @property
    def average_count(self) -> int:
        """K of `avg:K`, 1 otherwise: how many best checkpoints must be kept."""
        return int(self.select.split(":")[1]) if self.select.startswith("avg:") else 1


@dataclass(frozen=True)
class DistributedConfig:
    strategy: Strategy = "ddp"
    """With several ranks: ddp (every rank holds the whole model) | fsdp (FSDP2 shards weights, gradients and optimizer state) |
    auto (ddp when the estimated training memory fits in one GPU, fsdp when it does not; ddp on CPU)."""
    timeout_s: float = 600.0
    """Seconds a collective may wait for the other ranks before the run stops with an error naming the lost ones."""

    def __post_init__(self) -> None:
        check(self.timeout_s > 0, "distributed.timeout_s", "must be > 0")


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = False
    """Train low-rank adapters (PEFT LoRA) on the frozen LLM; the output model.pt gets them merged in."""
    rank: int = 16
    """Rank r of each adapter pair (B·A); the release's lora_conf uses 16."""
    alpha: int = 32
    """Scale numerator: the adapters add (alpha / rank)·B·A to each target weight."""
    dropout: float = 0.05
    """Dropout on the adapters' input while training."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the LLM's Linear layers that get adapters (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)."""

    def __post_init__(self) -> None:
        check(self.rank >= 1, "lora.rank", "must be >= 1")
        check(self.alpha > 0, "lora.alpha", "must be > 0")
        check(0 <= self.dropout < 1, "lora.dropout", "must be in [0, 1)")
        check(len(self.target_modules) > 0, "lora.target_modules", "must name at least one Linear layer of the LLM (e.g. [q_proj, v_proj])")


@dataclass(frozen=True)
class TrainConfig:
    trainable: tuple[Module, ...] = ("adaptor",)
    """Modules whose weights train: any of encoder, adaptor, llm. The rest stay frozen in eval mode."""
    max_epochs: int = 10
    """Passes over the training data."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: no limit besides max_epochs)."""
    seed: int = 42
    """Seeds weights of new layers, shuffling, dropout and the batch order."""
    device: Device = "auto"
    """auto (CUDA if available), cpu, cuda, cuda:N."""
    precision: Precision = "auto"
    """auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp16 (autocast with a dynamic loss scale, for GPUs without bf16:
    V100, T4) | fp32."""
    log_every: int = 10
    """Write a metrics line every this many optimizer steps."""
    compile: bool = False
    """torch.compile the encoder and the LLM (compiling takes minutes and every new batch shape may recompile: pair it
    with data.speech_buckets/token_buckets; meant for GPUs)."""
    activation_checkpointing: bool = False
    """Recompute encoder and LLM layer activations during backward instead of keeping them: less memory, more compute."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        modules = ", ".join(typing.get_args(Module))
        check(len(self.trainable) > 0 or self.lora.enabled, "trainable", f"must list at least one of {modules} (or set lora.enabled=true)")
        # Adapters on weights that train themselves would be two updates of one matrix.
        check(
            not (self.lora.enabled and "llm" in self.trainable),
            "lora.enabled",
            "LoRA adapts a frozen LLM: remove llm from trainable, or set lora.enabled=false to fine-tune the whole LLM",
        )
        check(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        check(self.max_steps >= 0, "max_steps", "must be >= 0")
        check(self.log_every >= 1, "log_every", "must be >= 1")


def config_from_dict(data: dict[str, Any], source: str) -> TrainConfig:
    """Build a TrainConfig from plain data; errors name the key and `source`."""
    try:
        return build(TrainConfig, data)
    except FieldError as error:
        raise ConfigError(f"{source}: {error}") from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=1e-4` -> ("optim.lr", "1e-4" as YAML reads it); types are checked by the schema."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (e.g. optim.lr=1e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"override {text!r}: {key!r} is not a config key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:  # type: ignore[assignment]
    """Read a profile YAML (or the defaults when `path` is None) and apply `key=value` overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: profile file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read ({error})") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
        config_from_dict(data, source)  # the file alone must be valid, so errors blame the file
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value, f"override {text!r}")
        try:
            build(TrainConfig, data)
        except FieldError as error:
            raise ConfigError(f"override {text!r}: {error}") from None
    return config_from_dict(data, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain data (tuples as lists) for writing the resolved config."""
    result: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        result[item.name] = value
    return result


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
