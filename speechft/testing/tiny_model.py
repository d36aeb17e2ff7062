"""Tiny Fun-ASR-Nano directories in exactly the official layout, for tests and the bundled demo.

`build_tiny_model_dir` writes what a user downloads (UPSTREAM.md §1) with small dimensions:
`config.yaml` laid out as the released one (tiny SenseVoiceEncoderSmall, Transformer adaptor,
Qwen3 LLM), `Qwen3-0.6B/config.json` with an explicit `head_dim`, a byte-level BPE tokenizer with
the Qwen chat special tokens, `configuration.json` and a seeded random `model.pt`. Both speechft's
`load_model` and `funasr.AutoModel(model=DIR, disable_update=True)` load it offline.

`release=` mirrors one of the two published copies of Fun-ASR-Nano-2512 (UPSTREAM.md §1.1) on
top of that: a CTC timestamp head declared in `config.yaml` (Transformer `ctc_decoder` + `ctc`,
SenseVoiceTokenizer over a small `multilingual.tiktoken` mapped through `configuration.json`),
every module `freeze: true`, `llm_dtype: bf16`, and a `model.pt` stored in bf16 with its own
copy of `llm.lm_head.weight` beside the tied `embed_tokens`. `"modelscope"` stores the CTC
weights, `"huggingface"` leaves them out (config unchanged), as the two copies do.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from speechft.data.audio import MODEL_SAMPLE_RATE
from speechft.model.build import CONFIG_FILE, CONFIGURATION_FILE, LLM_FOLDER, WEIGHTS_FILE, build_model_from_config, read_model_config
from speechft.testing.tiny_tokenizer import build_tiny_tokenizer

# Enough text for the BPE to learn the ChatML scaffolding and the guide's prompts compactly.
DEFAULT_CORPUS = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
    "<|im_end|>\n<|im_start|>assistant\n",
    "语音转写：",
    "Speech transcription:",
    "语音转写成英文：",
    "语音转写成中文：",
    "Transcribe speech into Chinese:",
    "Transcribe speech into English:",
    "语音转写，不进行文本规整：",
    "Speech transcription without text normalization:",
    "zero one two three four five six seven eight nine ten",
    "turn on the light turn off the music open the door close the window stop go left right up down",
    "零一二三四五六七八九十百千万",
    "hello world yes no please thank you",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ,.?!'",
)


@dataclass(frozen=True)
class TinyShape:
    """The dimensions of a tiny Fun-ASR-Nano; the defaults make a 0.9 M-parameter model that trains in seconds on CPU."""

    encoder_dim: int = 96
    encoder_heads: int = 4
    encoder_linear_units: int = 192
    encoder_blocks: int = 3
    encoder_tp_blocks: int = 1
    adaptor_ffn_dim: int = 192
    adaptor_layers: int = 1
    adaptor_heads: int = 4
    llm_hidden: int = 96
    llm_layers: int = 2
    llm_heads: int = 4
    llm_kv_heads: int = 2
    llm_head_dim: int = 24
    llm_intermediate: int = 192
    ctc_layers: int = 1
    """Transformer layers of the CTC head (release layouts only)."""
    ctc_ffn_dim: int = 192


# The "mid-size" model the benchmarks use (encoder 256-dim x 6 blocks, LLM 512 hidden x 4 layers,
# about 24 M parameters): `build_tiny_model_dir(path, shape=MID_SIZE)`.
MID_SIZE = TinyShape(
    encoder_dim=256,
    encoder_heads=4,
    encoder_linear_units=1024,
    encoder_blocks=6,
    encoder_tp_blocks=1,
    adaptor_ffn_dim=1024,
    adaptor_layers=2,
    adaptor_heads=8,
    llm_hidden=512,
    llm_layers=4,
    llm_heads=8,
    llm_kv_heads=4,
    llm_head_dim=64,
    llm_intermediate=1536,
)
# Qwen3's output layer size (Qwen3-0.6B config.json `vocab_size`).
QWEN3_VOCAB_SIZE = 151936

Release = Literal["modelscope", "huggingface"]
RELEASES: tuple[str, ...] = ("modelscope", "huggingface")
CTC_TOKENIZER_FILE = "multilingual.tiktoken"
# The released SenseVoiceTokenizer setting; the count is larger than funasr's language table, so
# every language token of that table is a special token.
CTC_NUM_LANGUAGES = 8749


# The released frontend (UPSTREAM.md §1), with dither 0 so features are deterministic.
_FRONTEND_CONF = {
    "fs": MODEL_SAMPLE_RATE,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "lfr_m": 7,
    "lfr_n": 6,
    "dither": 0.0,
    "cmvn_file": None,
}
# The released file's recipe sections (UPSTREAM.md §3), which speechft reads but does not train by.
_RECIPE_SECTIONS = {
    "train_conf": {
        "accum_grad": 1,
        "grad_clip": 5,
        "max_epoch": 50,
        "keep_nbest_models": 20,
        "avg_nbest_model": 10,
        "log_interval": 100,
        "validate_interval": 2000,
        "save_checkpoint_interval": 2000,
    },
    "optim": "adamw",
    "optim_conf": {"lr": 5.0e-06, "weight_decay": 0.0},
    "scheduler": "warmuplr",
    "scheduler_conf": {"warmup_steps": 2500},
    "dataset": "FunASR",
    "dataset_conf": {
        "index_ds": "FunASR",
        "batch_sampler": "BatchSampler",
        "batch_type": "token",
        "batch_size": 6000,
        "max_token_length": 3500,
        "shuffle": True,
        "sort_size": 1024,
        "batch_size_sample_max": 10,
        "num_workers": 4,
    },
    "tokenizer": "HuggingfaceTokenizer",
    "tokenizer_conf": {"init_param_path": "${llm_conf.init_param_path}"},
}


def _encoder_conf(shape: TinyShape) -> dict:
    """SenseVoiceEncoderSmall as released, with the shape's dimensions."""
    return {
        "output_size": shape.encoder_dim,
        "attention_heads": shape.encoder_heads,
        "linear_units": shape.encoder_linear_units,
        "num_blocks": shape.encoder_blocks,
        "tp_blocks": shape.encoder_tp_blocks,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
        "freeze": True,
        "freeze_layer_num": -1,
        "feat_permute": True,
    }


def tiny_config(shape: TinyShape) -> dict:
    """config.yaml content: the released file's structure and settings, tiny dimensions.

    The adaptor stacks 8 encoder frames (`downsample_rate: 8`) so its output length equals the
    audio-token count the LLM sees; dither is 0 so features are deterministic.
    """
    return {
        "model": "FunASRNano",
        "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": _encoder_conf(shape),
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": "fp32", "init_param_path": LLM_FOLDER, "use_lora": False},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 8,
            "use_low_frame_rate": True,
            "ffn_dim": shape.adaptor_ffn_dim,
            "llm_dim": shape.llm_hidden,
            "encoder_dim": shape.encoder_dim,
            "n_layer": shape.adaptor_layers,
            "attention_heads": shape.adaptor_heads,
            "freeze": False,
        },
        "frontend": "WavFrontend",
        "frontend_conf": dict(_FRONTEND_CONF),
        **copy.deepcopy(_RECIPE_SECTIONS),
    }


def release_config(config: dict, shape: TinyShape, ctc_vocab_size: int) -> dict:
    """`config` turned into the released file's settings (UPSTREAM.md §1.1): every module frozen,
    the LLM in bf16, and the CTC timestamp head with its tokenizer under `dataset_conf`.

    The release omits `ctc_vocab_size` (funasr's default, 60,515, is its tiktoken's size); a tiny
    tiktoken is smaller, so the size is written out here, the one key the release does not have.
    """
    config = json.loads(json.dumps(config))
    config["audio_encoder_conf"]["freeze"] = True
    config["audio_adaptor_conf"]["freeze"] = True
    config["llm_conf"].update(
        {
            "freeze": True,
            "llm_dtype": "bf16",
            "use_lora": False,
            "lora_conf": {
                "freeze_lora": False,
                "task_type": "CAUSAL_LM",
                "r": 16,
                "lora_alpha": 32,
                "lora_dropout": 0.05,
                "target_modules": ["q_proj", "v_proj"],
            },
        }
    )
    config["ctc_decoder"] = "Transformer"
    config["detach_ctc_decoder"] = True
    config["ctc_decoder_conf"] = {
        "downsample_rate": 1,
        "ffn_dim": shape.ctc_ffn_dim,
        "llm_dim": shape.encoder_dim,
        "encoder_dim": shape.encoder_dim,
        "n_layer": shape.ctc_layers,
        "freeze": False,
    }
    config["ctc_weight"] = 1.0
    config["ctc_conf"] = {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True}
    config["ctc_vocab_size"] = ctc_vocab_size
    config["dataset_conf"]["ctc_tokenizer"] = "SenseVoiceTokenizer"
    config["dataset_conf"]["ctc_tokenizer_conf"] = {"vocab_path": None, "is_multilingual": True, "num_languages": CTC_NUM_LANGUAGES}
    return config


def write_ctc_tiktoken(path: Path) -> int:
    """A byte-level tiktoken file (one base64 token and its rank per line): the 256 bytes and no
    merges. Returns the CTC vocabulary size funasr's SenseVoiceTokenizer builds from it (the
    ranks plus its special tokens), which is what the CTC output layer must have."""
    path.write_text("".join(f"{base64.b64encode(bytes([value])).decode()} {value}\n" for value in range(256)), encoding="ascii")
    from speechft.model.build import import_funasr

    import_funasr()
    from funasr.models.sense_voice.whisper_lib.tokenizer import get_encoding

    return int(get_encoding(name="multilingual", num_languages=CTC_NUM_LANGUAGES, vocab_path=str(path)).n_vocab)


def qwen3_config(shape: TinyShape, *, vocab_size: int, end_token_id: int, pad_token_id: int) -> dict:
    """Qwen3-0.6B/config.json with tiny dimensions; `head_dim` explicit as in the real file."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        "hidden_size": shape.llm_hidden,
        "intermediate_size": shape.llm_intermediate,
        "num_hidden_layers": shape.llm_layers,
        "num_attention_heads": shape.llm_heads,
        "num_key_value_heads": shape.llm_kv_heads,
        "head_dim": shape.llm_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "max_window_layers": shape.llm_layers,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": pad_token_id,
        "eos_token_id": end_token_id,
        "pad_token_id": pad_token_id,
        "torch_dtype": "float32",
    }


def build_tiny_model_dir(
    path: str | Path,
    *,
    seed: int = 0,
    shape: TinyShape = TinyShape(),
    tokenizer_corpus: Iterable[str] = (),
    tokenizer_vocab_size: int = 400,
    llm_vocab_size: int | None = None,
    release: Release | None = None,
) -> Path:
    """Write a tiny, randomly initialised Fun-ASR-Nano directory at `path` and return it.

    `tokenizer_corpus` is added to a built-in corpus (ChatML scaffolding, the guide's prompts,
    digits and commands) to train the byte-level BPE. The same `seed` gives the same weights.
    `llm_vocab_size` widens the LLM's embedding and output layer past the tokenizer (as Qwen3's
    151,936 rows do past its 151,669 tokens), e.g. to measure the cost of a full-size vocabulary.
    `release` lays the directory out as that published copy (see the module docstring).
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if release is not None and release not in RELEASES:
        raise ValueError(f"release {release!r}: use one of {', '.join(RELEASES)}")
    llm_dir = directory / LLM_FOLDER
    build_tiny_tokenizer(llm_dir, [*DEFAULT_CORPUS, *tokenizer_corpus], vocab_size=tokenizer_vocab_size)
    tokenizer_json = json.loads((llm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ids = {token["content"]: token["id"] for token in tokenizer_json.get("added_tokens", [])}
    vocab_size = max([*tokenizer_json["model"]["vocab"].values(), *ids.values()]) + 1
    if llm_vocab_size is not None:
        if llm_vocab_size < vocab_size:
            raise ValueError(f"llm_vocab_size {llm_vocab_size} is smaller than the tokenizer's {vocab_size} ids")
        vocab_size = llm_vocab_size
    llm_config = qwen3_config(shape, vocab_size=vocab_size, end_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    (llm_dir / "config.json").write_text(json.dumps(llm_config, indent=2) + "\n", encoding="utf-8")
    config = tiny_config(shape)
    if release is not None:
        config = release_config(config, shape, write_ctc_tiktoken(directory / CTC_TOKENIZER_FILE))
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    _write_configuration(directory, release)
    _write_weights(directory, seed, release)
    return directory


def _write_configuration(directory: Path, release: Release | None) -> None:
    """configuration.json, which maps the files funasr.AutoModel looks for."""
    configuration: dict = {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": WEIGHTS_FILE,
            "config": CONFIG_FILE,
            "tokenizer_conf": {"init_param_path": LLM_FOLDER},
            "llm_conf": {"init_param_path": LLM_FOLDER},
        },
    }
    if release is not None:
        configuration["file_path_metas"]["dataset_conf"] = {"ctc_tokenizer_conf": {"vocab_path": CTC_TOKENIZER_FILE}}
    (directory / CONFIGURATION_FILE).write_text(json.dumps(configuration, indent=2) + "\n", encoding="utf-8")


def _write_weights(directory: Path, seed: int, release: Release | None) -> None:
    """model.pt: the model built from the directory's own config, seeded."""
    import torch

    model, _ = build_model_from_config(read_model_config(directory), config_path=directory / CONFIG_FILE, seed=seed)
    if release is None:
        state = {name: tensor.detach().to(torch.float32).contiguous() for name, tensor in model.state_dict().items()}
    else:
        # bf16 throughout, every key its own storage (the tied lm_head is a separate tensor in the
        # release file); the Hugging Face copy has no CTC tensors at all.
        state = {
            name: tensor.detach().to(torch.bfloat16).contiguous().clone()
            for name, tensor in model.state_dict().items()
            if release == "modelscope" or not name.startswith(("ctc_decoder.", "ctc."))
        }
    torch.save(state, directory / WEIGHTS_FILE)
