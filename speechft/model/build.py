"""One builder for Fun-ASR-Nano: official-layout directory in, model + frontend + tokenizer out.

The directory is the one users download (UPSTREAM.md §1): `config.yaml`, `model.pt`,
`configuration.json` and `Qwen3-0.6B/` (LLM config and tokenizer only). The model class is
funasr's own `FunASRNano`, used as a library; nothing here touches a hub, runs the update check or
imports remote code. Every weight comes from `model.pt`, and a key that is missing or unexpected is
an error: a checkpoint without `llm.*` keys would otherwise give a random LLM and garbage text.

One exception, the optional CTC timestamp head (UPSTREAM.md §1.1): the release's `config.yaml`
declares it, the ModelScope copy stores its weights and the Hugging Face copy stores none. A
`model.pt` with no CTC tensor at all is a copy without the head: the model is built without it
(its tokenizer file is not needed then) and a note says so. Part of the head missing stays an
error, as any other missing key.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechft.errors import ConfigError, InputError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"
CONFIGURATION_FILE = "configuration.json"
LLM_FOLDER = "Qwen3-0.6B"
CHAT_SYSTEM_PROMPT = "You are a helpful assistant."

# Top-level modules of FunASRNano, by the short names profiles and reports use.
MODULE_PREFIXES = {
    "encoder": "audio_encoder.",
    "adaptor": "audio_adaptor.",
    "llm": "llm.",
    "ctc": "ctc",  # both `ctc_decoder.` and `ctc.` belong to the optional timestamp head
}


@dataclass
class ModelBundle:
    """What decoding and training need from a model directory.

    `frontend` computes fbank + LFR features with dither 0 (deterministic decoding and
    validation); `frontend_conf` is the directory's own setting, dither included, for training.
    """

    model: Any  # funasr FunASRNano (a torch.nn.Module)
    frontend: Any  # funasr WavFrontend
    tokenizer: Any  # transformers tokenizer from <model_dir>/Qwen3-0.6B
    model_dir: Path
    config: dict[str, Any]  # config.yaml with file paths made absolute
    device: Any  # torch.device
    weights_path: Path | None = None  # the file the weights came from
    ctc_head: bool = False  # whether the model has the CTC timestamp head (weights loaded)
    notes: list[str] = field(default_factory=list)  # what a user should know about this directory

    @property
    def frontend_conf(self) -> dict[str, Any]:
        return dict(self.config.get("frontend_conf") or {})

    @property
    def llm_dtype(self) -> Any:
        """The dtype funasr holds the LLM in (`llm_conf.llm_dtype`; bf16 in the release)."""
        import torch

        name = str((self.config.get("llm_conf") or {}).get("llm_dtype", "fp32"))
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name, torch.float32)

    @property
    def end_token_id(self) -> int:
        """Id of `<|im_end|>`, which ends every assistant turn."""
        return int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))


def module_of(parameter_name: str) -> str:
    """The short module name (`encoder`, `adaptor`, `llm`, `ctc`) a parameter belongs to."""
    for name, prefix in MODULE_PREFIXES.items():
        if parameter_name.startswith(prefix):
            return name
    return "other"


def audio_token_count(lfr_frames: int) -> int:
    """How many adaptor outputs reach the LLM for `lfr_frames` LFR frames (UPSTREAM.md §1).

    The encoder's two stride-2 convolutions and the adaptor's stride 2 of the released model give
    about two tokens per second; the LLM was trained on exactly this many audio positions.
    """
    frames = 1 + (lfr_frames - 1) // 2
    frames = 1 + (frames - 1) // 2
    return (frames - 1) // 2 + 1


def is_ctc_key(parameter_name: str) -> bool:
    return module_of(parameter_name) == "ctc"


def declares_ctc_head(config: dict[str, Any]) -> bool:
    return config.get("ctc_decoder") is not None


def without_ctc_head(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the CTC timestamp head taken out: FunASRNano is then built without it."""
    config = dict(config)
    config["ctc_decoder"] = None
    return config


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: {what} not found; is this an official Fun-ASR-Nano model directory?")
    return path


def _absolute_file_paths(model_dir: Path, metas: Any, config: dict[str, Any]) -> None:
    """Point the keys `configuration.json` lists (relative file names) at files in `model_dir`."""
    if not isinstance(metas, dict):
        return
    for key, value in metas.items():
        if isinstance(value, str):
            candidate = model_dir / value
            if candidate.exists():
                config[key] = str(candidate)
        elif isinstance(value, dict):
            section = config.get(key)
            if not isinstance(section, dict):
                section = {}
                config[key] = section
            _absolute_file_paths(model_dir, value, section)


def read_model_config(model_dir: str | Path) -> dict[str, Any]:
    """`config.yaml` of a model directory, interpolations resolved, file paths made absolute.

    Relative paths are resolved the way funasr's AutoModel does it for a local directory (through
    `configuration.json`), and `llm_conf.init_param_path` / `tokenizer_conf.init_param_path` also
    fall back to `<model_dir>/<name>` so a relative `Qwen3-0.6B` never becomes a hub id.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    model_dir = Path(model_dir)
    config_path = _require(model_dir / CONFIG_FILE, CONFIG_FILE)
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
    except (OmegaConfBaseException, OSError, ValueError) as error:
        raise InputError(f"{config_path}: cannot read ({error})") from None
    if not isinstance(loaded, dict) or "model" not in loaded:
        raise InputError(f"{config_path}: no `model:` entry; not a funasr model config")
    configuration_path = model_dir / CONFIGURATION_FILE
    if configuration_path.exists():
        try:
            metas = json.loads(configuration_path.read_text(encoding="utf-8")).get("file_path_metas", {})
        except (OSError, ValueError) as error:
            raise InputError(f"{configuration_path}: cannot read ({error})") from None
        _absolute_file_paths(model_dir, {k: v for k, v in metas.items() if k != "config"}, loaded)
    for section in ("llm_conf", "tokenizer_conf"):
        conf = loaded.get(section)
        if isinstance(conf, dict) and isinstance(conf.get("init_param_path"), str):
            path = conf["init_param_path"]
            if not os.path.isabs(path) and (model_dir / path).exists():
                conf["init_param_path"] = str(model_dir / path)
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(loaded), resolve=True)
    except OmegaConfBaseException as error:
        raise InputError(f"{config_path}: cannot resolve ({error})") from None
    assert isinstance(resolved, dict)
    return resolved


def _check_offline(config: dict[str, Any], config_path: Path) -> Path:
    """Refuse settings that would make funasr or transformers reach a hub; return the LLM folder."""
    if config.get("model") != "FunASRNano":
        raise ConfigError(f"{config_path}: model is {config.get('model')!r}; speechft trains FunASRNano only")
    encoder_conf = config.get("audio_encoder_conf") or {}
    if encoder_conf.get("hub") is not None:
        raise ConfigError(
            f"{config_path}: audio_encoder_conf.hub is {encoder_conf.get('hub')!r}, which downloads the "
            "encoder; use the released directory, whose config builds the encoder locally"
        )
    llm_conf = config.get("llm_conf") or {}
    llm_dir = Path(str(llm_conf.get("init_param_path", "")))
    if not llm_dir.is_dir() or not (llm_dir / "config.json").exists():
        raise InputError(
            f"{config_path}: llm_conf.init_param_path {llm_conf.get('init_param_path')!r} is not a local "
            f"folder with config.json (expected {config_path.parent / LLM_FOLDER})"
        )
    return llm_dir


def _check_ctc_tokenizer(config: dict[str, Any], config_path: Path) -> None:
    """A declared CTC head needs its tokenizer file (`multilingual.tiktoken`) to be built."""
    if not declares_ctc_head(config):
        return
    conf = config.get("ctc_tokenizer_conf") or (config.get("dataset_conf") or {}).get("ctc_tokenizer_conf") or {}
    vocab_path = conf.get("vocab_path")
    if not vocab_path or not Path(str(vocab_path)).is_file():
        raise InputError(
            f"{config_path}: declares a CTC timestamp head whose tokenizer file is missing "
            f"({vocab_path or 'ctc_tokenizer_conf.vocab_path is unset and configuration.json does not map it'}); "
            f"copy multilingual.tiktoken from the release into {config_path.parent}"
        )


def import_funasr() -> Any:
    """`import funasr`, which imports (and so registers) every funasr model class.

    funasr prints an ffmpeg notice on stdout while importing; speechft reads audio through its own
    loader (soundfile, PyAV), and a command's stdout belongs to its results, so the notice is dropped.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        import funasr
    return funasr


def build_model_from_config(config: dict[str, Any], *, config_path: Path, seed: int = 0) -> tuple[Any, Any]:
    """Construct FunASRNano and its frontend from a resolved config, weights random (seeded).

    Returns `(model, frontend_class)`. Used by `load_model` and by the tiny-model writer.
    """
    import torch

    import_funasr()
    from funasr.models.fun_asr_nano.model import FunASRNano
    from funasr.register import tables

    _check_offline(config, config_path)
    _check_ctc_tokenizer(config, config_path)
    frontend_class = tables.frontend_classes.get(config.get("frontend", "WavFrontend"))
    if frontend_class is None:
        raise ConfigError(f"{config_path}: unknown frontend {config.get('frontend')!r}")
    input_size = frontend_class(**_frontend_kwargs(config, dither=0.0)).output_size()
    for key, table in (("audio_encoder", tables.encoder_classes), ("audio_adaptor", tables.adaptor_classes)):
        if table.get(config.get(key)) is None:
            raise ConfigError(f"{config_path}: unknown {key} {config.get(key)!r}")
    # FunASRNano mutates the *_conf dicts it receives; keep the caller's config intact.
    model_kwargs = copy.deepcopy(config)
    model_kwargs.update(copy.deepcopy(config.get("model_conf") or {}))
    model_kwargs["input_size"] = input_size
    # FunASRNano announces itself on the root logger at INFO; keep library output quiet.
    logging.disable(logging.INFO)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = FunASRNano(**model_kwargs)
    finally:
        logging.disable(logging.NOTSET)
    return model, frontend_class


def _frontend_kwargs(config: dict[str, Any], *, dither: float | None) -> dict[str, Any]:
    kwargs = dict(config.get("frontend_conf") or {})
    if dither is not None:
        kwargs["dither"] = dither
    return kwargs


def build_frontend(config: dict[str, Any], *, dither: float | None = 0.0) -> Any:
    """The model's WavFrontend; `dither=None` keeps the directory's setting (funasr's default is 1.0)."""
    import_funasr()
    from funasr.register import tables

    frontend_class = tables.frontend_classes.get(config.get("frontend", "WavFrontend"))
    return frontend_class(**_frontend_kwargs(config, dither=dither))


def read_state_dict(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Tensors of a `model.pt`, unwrapped from the usual containers, without a `module.` prefix.

    `mmap=True` maps the file instead of reading it (for a pass that touches each tensor once)."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        # Files written by older funasr trainers pickle extra objects beside the tensors.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputError(f"{path}: cannot read weights ({error})") from None
    while isinstance(state, dict):
        inner = next((state[k] for k in ("state_dict", "model_state_dict", "model") if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(model: Any, path: Path, *, allow_missing: bool = False, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load `path` (or its already read `state`) into `model` strictly; return the dtype each
    loaded tensor had in the file.

    Missing keys are tolerated only with `allow_missing` (they keep the model's values).
    """
    state = read_state_dict(path) if state is None else state
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_preview(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} keys with other shapes ({_preview(mismatched)})")
    if mismatched or (problems and not allow_missing):
        hint = "" if mismatched else "; pass --allow-missing to keep random weights for the missing ones"
        raise InputError(f"{path}: does not match config.yaml: {'; '.join(problems)}{hint}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return {k: v.dtype for k, v in state.items()}


def _fit_ctc_head(config: dict[str, Any], state: dict[str, Any], weights_path: Path) -> tuple[dict[str, Any], list[str]]:
    """The config to build, without its CTC head when the weights hold none of it; and a note saying so."""
    if declares_ctc_head(config) and not any(is_ctc_key(name) for name in state):
        note = (
            f"{weights_path.name} has no CTC timestamp head (as in the Hugging Face copy of the release): "
            "loaded without it; transcription is unaffected, timestamps are unavailable"
        )
        return without_ctc_head(config), [note]
    return config, []


def load_model(
    model_dir: str | Path,
    *,
    device: str = "cpu",
    dtype: Any = None,
    allow_missing: bool = False,
    weights: str | Path | None = None,
    announce: bool = True,
) -> ModelBundle:
    """Build FunASRNano from an official-layout directory, fully offline, weights loaded strictly.

    `dtype` (default float32) applies to the whole model; bf16 on CUDA is done with autocast by
    the callers. `weights` replaces `<model_dir>/model.pt` (e.g. a checkpoint's full state dict).
    Missing, unexpected or reshaped keys raise InputError naming them; `allow_missing=True`
    tolerates missing ones (they keep seeded random values). A file without any CTC tensor gives a
    model without the CTC head (see the module docstring); `announce` prints the bundle's notes on
    stderr. The model is returned in eval mode.
    """
    import torch

    from speechft.model.tokenizer import load_tokenizer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model directory not found")
    config_path = _require(model_dir / CONFIG_FILE, CONFIG_FILE)
    weights_path = _require(Path(weights) if weights is not None else model_dir / WEIGHTS_FILE, WEIGHTS_FILE)
    config = read_model_config(model_dir)
    llm_dir = _check_offline(config, config_path)
    state = read_state_dict(weights_path)
    config, notes = _fit_ctc_head(config, state, weights_path)
    model, _ = build_model_from_config(config, config_path=config_path)
    load_weights(model, weights_path, allow_missing=allow_missing, state=state)
    del state
    target_device = torch.device(device)
    model.to(device=target_device, dtype=dtype or torch.float32)
    model.eval()
    tokenizer_dir = Path(str((config.get("tokenizer_conf") or {}).get("init_param_path", llm_dir)))
    tokenizer = load_tokenizer(tokenizer_dir if tokenizer_dir.is_dir() else llm_dir)
    bundle = ModelBundle(
        model=model,
        frontend=build_frontend(config, dither=0.0),
        tokenizer=tokenizer,
        model_dir=model_dir,
        config=config,
        device=target_device,
        weights_path=weights_path,
        ctc_head=getattr(model, "ctc_decoder", None) is not None,
        notes=notes,
    )
    if announce:
        from speechft import console

        for note in bundle.notes:
            console.err.print(f"[dim]{note}[/]", soft_wrap=True)
    return bundle
