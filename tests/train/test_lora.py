"""LoRA on the LLM (the `lora:` section, the `llm-lora` profile): what trains, the merge into a
plain model.pt, the unmerged adapters in PEFT's format, exact resume and DDP with adapters on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from release_fixtures import build_release_dir, funasr_reference, funasr_texts, prep_jsonl, speechft_texts, write_data_dir
from speech_fixtures import make_corpus, write_jsonl

from speechft.cli.app import app

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

# Merged and unmerged LLMs compute the same function; in fp32 only the summation order differs.
LOGITS_ATOL = 1e-5


def _apply(model, **overrides):
    from speechft.train.config import LoraConfig
    from speechft.train.lora import apply_lora

    settings = LoraConfig(enabled=True, **overrides)
    apply_lora(model, settings, seed=0)
    return settings


def _randomise_adapters(model, seed: int = 5) -> None:
    # B starts at zero (the adapted model equals the base); trained adapters are not.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_" in name:
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))


def _logits(llm, embeds):
    with torch.no_grad():
        return llm(inputs_embeds=embeds, use_cache=False).logits


def test_config_section_defaults_and_errors() -> None:
    from speechft.errors import ConfigError
    from speechft.train.config import load_config

    config = load_config(None)
    assert not config.lora.enabled
    assert (config.lora.rank, config.lora.alpha, config.lora.dropout, config.lora.target_modules) == (16, 32, 0.05, ("q_proj", "v_proj"))
    assert load_config(None, ["lora.enabled=true", "trainable=[]"]).trainable == ()
    with pytest.raises(ConfigError, match=r"lora\.enabled: LoRA adapts a frozen LLM: remove llm from trainable"):
        load_config(None, ["lora.enabled=true", "trainable=adaptor,llm"])
    with pytest.raises(ConfigError, match=r"lora\.rank: must be >= 1"):
        load_config(None, ["lora.rank=0"])
    with pytest.raises(ConfigError, match=r"trainable: must list at least one of .*or set lora.enabled=true"):
        load_config(None, ["trainable=[]"])


def test_unknown_target_module_names_the_key_and_the_choices(tiny_dir: Path) -> None:
    from speechft.errors import ConfigError
    from speechft.model.build import load_model

    model = load_model(tiny_dir, announce=False).model
    with pytest.raises(ConfigError, match=r"lora\.target_modules: qproj is no Linear layer of the LLM; choose among .*q_proj.*v_proj"):
        _apply(model, target_modules=("qproj",))


def test_only_adapters_and_the_profile_modules_train(tiny_dir: Path) -> None:
    from speechft.model.build import load_model
    from speechft.train.modules import apply_trainable, set_train_mode

    model = load_model(tiny_dir, announce=False).model
    _apply(model)
    counts = apply_trainable(model, ["adaptor"])
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith("audio_adaptor.") or ".lora_" in name for name in trainable)
    llm = model.llm.config
    # q_proj: hidden -> heads*head_dim, v_proj: hidden -> kv_heads*head_dim; A is (r, in), B is (out, r).
    per_layer = 16 * (llm.hidden_size + llm.num_attention_heads * llm.head_dim) + 16 * (llm.hidden_size + llm.num_key_value_heads * llm.head_dim)
    assert counts["lora"].trainable == per_layer * llm.num_hidden_layers and counts["lora"].frozen == 0
    assert counts["llm"].trainable == 0 and counts["encoder"].trainable == 0
    set_train_mode(model, ["adaptor"])
    dropouts = [module for name, module in model.named_modules() if name.endswith(".lora_dropout.default")]
    assert dropouts and all(module.training for module in dropouts)
    assert not model.llm.training and not model.llm.model.layers[0].self_attn.q_proj.base_layer.training
    model.eval()
    assert not any(module.training for module in dropouts)


@pytest.mark.slow
def test_training_steps_change_only_the_adapters_and_the_adaptor(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.collate import collate
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.model.build import load_model
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.forward import TrainForward
    from speechft.train.loop import train_step
    from speechft.train.modules import apply_trainable, set_train_mode
    from speechft.train.optim import make_optimizer

    config = load_config(profiles_dir() / "llm-lora.yaml", ["optim.lr=1e-2", "schedule.warmup_fraction=0"])
    bundle = load_model(tiny_dir, announce=False)
    model = bundle.model
    _apply(model)
    apply_trainable(model, config.trainable)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    utterances, _ = read_manifest(write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 4)))
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    optimizer, scheduler = make_optimizer(model, config, total_steps=10)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for name, p in model.named_parameters() if name.startswith("audio_adaptor.") or ".lora_" in name}
    set_train_mode(model, config.trainable)
    for step in range(2):
        train_step(TrainForward(model, torch.device("cpu"), None), optimizer, scheduler, [collate([dataset[2 * step], dataset[2 * step + 1]])], config)
    moved = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert any(".lora_B." in name for name in moved) and any(name.startswith("audio_adaptor.") for name in moved)
    assert all(name.startswith("audio_adaptor.") or ".lora_" in name for name in moved), sorted(moved)


def test_merged_and_unmerged_llms_give_the_same_logits(tiny_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from speechft.model.build import load_model, read_state_dict
    from speechft.train.checkpoint import trainable_state
    from speechft.train.export import export_state
    from speechft.train.lora import merged_deltas, save_adapters
    from speechft.train.modules import apply_trainable

    bundle = load_model(tiny_dir, announce=False)
    model = bundle.model
    settings = _apply(model)
    apply_trainable(model, ["adaptor"])
    _randomise_adapters(model)
    model.eval()
    embeds = torch.randn(2, 7, model.llm.config.hidden_size, generator=torch.Generator().manual_seed(1))
    adapted = _logits(model.llm, embeds)

    state = trainable_state(model)
    base = read_state_dict(bundle.weights_path)
    exported = export_state(model, base, {}, lora_deltas=merged_deltas([state], settings))
    assert set(exported) == set(base)  # a plain model: no adapter keys, no base_layer names
    plain = load_model(tiny_dir, announce=False).model
    plain.load_state_dict(exported)
    merged = _logits(plain.llm, embeds)
    assert not torch.allclose(merged, _logits(load_model(tiny_dir, announce=False).model.llm, embeds), atol=1e-3)  # the merge changed something
    torch.testing.assert_close(merged, adapted, rtol=0, atol=LOGITS_ATOL)

    # The unmerged adapters in PEFT's format reproduce the adapted model on the plain base LLM.
    save_adapters(tmp_path / "lora", state, settings, source="test")
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == 16 and config["lora_alpha"] == 32 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    base_llm = load_model(tiny_dir, announce=False).model.llm
    peft_llm = PeftModel.from_pretrained(base_llm, tmp_path / "lora").eval()
    torch.testing.assert_close(_logits(peft_llm, embeds), adapted, rtol=0, atol=LOGITS_ATOL)


def test_averaged_checkpoints_merge_the_mean_of_the_products() -> None:
    from speechft.train.config import LoraConfig
    from speechft.train.lora import merged_deltas

    generator = torch.Generator().manual_seed(0)
    name = "llm.model.layers.0.self_attn.q_proj"
    states = [
        {f"{name}.lora_A.default.weight": torch.randn(4, 6, generator=generator), f"{name}.lora_B.default.weight": torch.randn(5, 4, generator=generator)}
        for _ in range(2)
    ]
    settings = LoraConfig(enabled=True, rank=4, alpha=8)
    delta = merged_deltas(states, settings)[f"{name}.weight"]
    products = [2.0 * state[f"{name}.lora_B.default.weight"] @ state[f"{name}.lora_A.default.weight"] for state in states]
    torch.testing.assert_close(delta, (products[0] + products[1]) / 2)
    mean_a = (states[0][f"{name}.lora_A.default.weight"] + states[1][f"{name}.lora_A.default.weight"]) / 2
    mean_b = (states[0][f"{name}.lora_B.default.weight"] + states[1][f"{name}.lora_B.default.weight"]) / 2
    assert not torch.allclose(delta, 2.0 * mean_b @ mean_a)


# ---- end to end on the release layout (ModelScope copy: bf16 model.pt, CTC head) ----


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release_dir(tmp_path_factory.mktemp("modelscope"), "modelscope")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def prepared(release_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    return prep_jsonl(CliRunner(), release_dir, data_dir, tmp_path_factory.mktemp("prep") / "train.jsonl")


def _train_arguments(model_dir: Path, train: Path, output: Path, *overrides: str) -> list[str]:
    return [
        "train",
        "--profile",
        "llm-lora",
        "--model-dir",
        str(model_dir),
        "--train",
        str(train),
        "--output-dir",
        str(output),
        "--quiet",
        "max_steps=4",
        "optim.lr=3e-2",
        "schedule.warmup_fraction=0",
        "data.num_workers=0",
        "data.token_budget=400",
        "data.max_utterances_per_batch=2",
        "validation.every_steps=1",
        "validation.max_new_tokens=4",
        *overrides,
    ]


def test_dry_run_shows_the_adapter_parameters(runner, release_dir: Path, prepared: Path, tmp_path: Path) -> None:
    arguments = _train_arguments(release_dir, prepared, tmp_path / "run", "--dry-run")
    arguments.remove("--quiet")
    result = runner.invoke(app, arguments, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.strip("│ ").startswith("lora "))
    assert row.split("│")[2].strip() == "10,752"  # trainable: 2 layers x 16 x ((96 + 96) + (96 + 48))
    assert "LoRA adapters included" in result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.slow
def test_llm_lora_exports_a_plain_merged_model_that_funasr_decodes_alike(runner, release_dir: Path, prepared: Path, data_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from speechft.model.build import load_model
    from speechft.train.checkpoint import CHECKPOINTS, TRAINABLE_FILE
    from speechft.train.config import LoraConfig
    from speechft.train.lora import merge_into, merged_deltas

    output = tmp_path / "run"
    result = runner.invoke(app, _train_arguments(release_dir, prepared, output, "checkpoint.select=avg:2", "checkpoint.keep_last=4"))
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "train_summary.json").read_text(encoding="utf-8"))
    chosen = [torch.load(output / CHECKPOINTS / name / TRAINABLE_FILE) for name in summary["selected"]]
    assert len(chosen) == 2
    # Checkpoints hold the adaptor and the adapters (PEFT names), nothing of the frozen LLM.
    for state in chosen:
        assert {name.split(".")[0] for name in state} == {"audio_adaptor", "llm"}
        assert all(".lora_A.default." in name or ".lora_B.default." in name for name in state if name.startswith("llm."))

    base = torch.load(release_dir / "model.pt")
    exported = torch.load(output / "model.pt")
    assert set(exported) == set(base)  # plain: no adapter keys, no base_layer names, CTC carried over
    deltas = merged_deltas(chosen, LoraConfig(enabled=True))
    assert len(deltas) == 4 and all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in deltas)
    changed = set()
    for name, tensor in exported.items():
        if name.startswith("audio_adaptor."):
            assert tensor.dtype == torch.float32, name
        elif name in deltas:
            assert tensor.dtype == base[name].dtype == torch.bfloat16, name
            assert torch.equal(tensor, merge_into(base[name], deltas[name])), name
        else:
            assert tensor.dtype == base[name].dtype and torch.equal(tensor, base[name]), name
        if not torch.equal(tensor.to(base[name].dtype), base[name]):
            changed.add(name)
    assert {name.split(".")[0] for name in changed} == {"audio_adaptor", "llm"}
    assert changed & set(deltas), "no merged weight differs from the base in bf16"
    config = (output / "config.yaml").read_text(encoding="utf-8")
    assert "use_lora: false" in config and config == (release_dir / "config.yaml").read_text(encoding="utf-8")

    # lora/: the best of the selected checkpoints, unmerged, in PEFT's format.
    assert sorted(path.name for path in (output / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    bundle = load_model(release_dir, announce=False)
    peft_llm = PeftModel.from_pretrained(bundle.model.llm, output / "lora")
    loaded = {name: parameter for name, parameter in peft_llm.named_parameters() if ".lora_" in name}
    best = chosen[0]
    assert len(loaded) == 8
    for name, parameter in loaded.items():
        key = "llm." + name.removeprefix("base_model.model.")
        assert torch.equal(parameter.detach(), best[key]), name

    # The merged model decodes the same in speechft and in funasr.AutoModel (itn=False: prep chose
    # the no-normalisation prompt, which prompt.json records and decode uses).
    assert json.loads((output / "prompt.json").read_text(encoding="utf-8"))["decode_prompt"] == "语音转写，不进行文本规整："
    ours = speechft_texts(runner, output, data_dir / "wav.scp", tmp_path / "hyp.txt")
    assert ours == funasr_texts(funasr_reference(output), data_dir / "wav.scp", itn=False)


# ---- exact resume and DDP with adapters on (subprocesses, one thread each) ----

# LoRA dropout and dither draw random numbers every step: the RNG state must come back exactly.
# 6 utterances, one held out, x 2 = 10 one-utterance batches per epoch; a checkpoint every 5 steps.
RESUME_SETTINGS = [
    "data.num_workers=0",
    "data.dither=1.0",
    "data.max_utterances_per_batch=1",
    "max_epochs=2",
    "optim.lr=1e-3",
    "lora.dropout=0.3",
    "validation.every_steps=5",
    "validation.max_utterances=1",
    "validation.max_new_tokens=2",
    "checkpoint.keep_last=100",
    "checkpoint.select=last",
]
RESUME_TOTAL_STEPS = 20


def _environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _speechft(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "speechft", *arguments]


@pytest.fixture(scope="module")
def resume_setup(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora-resume")
    return tiny_dir, write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 6))


def _resume_command(setup: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    model, corpus = setup
    arguments = ["train", "--profile", "llm-lora", "--model-dir", str(model), "--train", f"{corpus}:2", "--output-dir", str(output), "--quiet"]
    return _speechft([*arguments, *RESUME_SETTINGS, *extra])


def _last_weights(output: Path, step: int | None = None) -> dict:
    from speechft.train.checkpoint import TRAINABLE_FILE, list_checkpoints

    latest = list_checkpoints(output)[-1]
    assert step is None or latest.step == step
    return torch.load(latest.path / TRAINABLE_FILE)


@pytest.mark.slow
def test_sigkill_then_resume_with_lora_is_bitwise_identical(resume_setup: tuple[Path, Path], tmp_path: Path) -> None:
    from speechft.train.checkpoint import STATE_FILE, list_checkpoints

    reference_dir = tmp_path / "uninterrupted"
    done = subprocess.run(_resume_command(resume_setup, reference_dir), capture_output=True, text=True, timeout=300, env=_environment())
    assert done.returncode == 0, done.stderr[-3000:]
    reference = _last_weights(reference_dir, RESUME_TOTAL_STEPS)
    assert any(".lora_A.default." in name for name in reference)

    output = tmp_path / "run"
    process = subprocess.Popen(_resume_command(resume_setup, output), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment())
    deadline = time.monotonic() + 240
    while not (output / "checkpoints" / "step-000005" / "meta.json").exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    latest = list_checkpoints(output)[-1]
    assert latest.step < RESUME_TOTAL_STEPS
    assert torch.load(latest.path / STATE_FILE, weights_only=False)["train_state"]["batch_in_epoch"] > 0

    resumed = subprocess.run(_resume_command(resume_setup, output, "--resume", "auto"), capture_output=True, text=True, timeout=300, env=_environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ours = _last_weights(output, RESUME_TOTAL_STEPS)
    assert set(ours) == set(reference)
    different = [name for name in reference if not torch.equal(ours[name], reference[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert (output / "lora" / "adapter_model.safetensors").exists()


DDP_SETTINGS = [
    "lora.dropout=0",  # no random numbers drawn: two ranks and one process must see the same computation
    "data.num_workers=0",
    "data.dither=0",
    "data.max_utterances_per_batch=1",
    # The profile's speed perturbation is the same on both sides too (drawn per utterance), but its
    # resampled audio takes Adam's rounding amplification to 5.2e-4 here: off, this compares DDP's
    # gradient averaging alone.
    "augment.speed=false",
    "max_epochs=2",
    "optim.lr=3e-3",
    "schedule.warmup_fraction=0",
    "validation.max_utterances=1",
    "validation.max_new_tokens=2",
    "log_every=1",
]


@pytest.mark.distributed
def test_two_ddp_ranks_match_one_rank_with_lora(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    corpus = write_jsonl(tmp_path / "train.jsonl", make_corpus(tmp_path / "wav", 9))  # 8 train, 1 held out
    two = tmp_path / "two"
    arguments = ["train", "--profile", "llm-lora", "--model-dir", str(tiny_dir), "--train", str(corpus), "--output-dir", str(two), "--quiet"]
    extra = ["--nproc-per-node", "2", *DDP_SETTINGS, "optim.grad_accum_steps=1", "distributed.strategy=ddp"]
    result = subprocess.run(_speechft([*arguments, *extra]), capture_output=True, text=True, timeout=300, env=_environment())
    assert result.returncode == 0, result.stderr[-3000:]

    one = tmp_path / "one"
    config = load_config(profiles_dir() / "llm-lora.yaml", [*DDP_SETTINGS, "optim.grad_accum_steps=2"])
    single = run_training(TrainRequest(model_dir=tiny_dir, train=(TrainSource(corpus),), output_dir=one, config=config, show_progress=False))
    assert single.steps == 8

    ours, reference = _last_weights(two), _last_weights(one)
    assert set(ours) == set(reference) and any(".lora_B.default." in name for name in ours)
    # Averaged all-reduce vs accumulated gradients differ in summation order; Adam rescales those
    # rounding differences on near-zero gradients up to ~1.6e-4 after 8 steps on this machine. A real
    # mismatch (a rank's gradient lost or not averaged) moves weights by ~lr (3e-3) per step.
    for name, tensor in reference.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-3, atol=5e-4, msg=name)
    assert any(not torch.equal(tensor, torch.zeros_like(tensor)) for name, tensor in ours.items() if ".lora_B." in name)
    two_state, one_state = torch.load(two / "model.pt"), torch.load(one / "model.pt")
    assert set(two_state) == set(one_state) and not any(".lora_" in name for name in two_state)
    shutil.rmtree(two / "checkpoints")  # the model directory stands alone
    from speechft.model.build import load_model

    load_model(two, announce=False)
