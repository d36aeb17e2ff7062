"""Both published copies of Fun-ASR-Nano-2512, mirrored at tiny size (UPSTREAM.md §1.1).

`build_tiny_model_dir(release=...)` writes the release's layout: CTC head declared in config.yaml
with a `multilingual.tiktoken`, every module `freeze: true`, `llm_dtype: bf16`, a bf16 `model.pt`
with a separate `llm.lm_head.weight`; the ModelScope copy stores the CTC weights, the Hugging Face
copy does not. prep, train (each profile), decode and funasr.AutoModel run on both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from release_fixtures import TEXTS, build_release_dir, funasr_reference, funasr_texts, prep_jsonl, speechft_texts, write_data_dir

from speechft.cli.app import app

torch = pytest.importorskip("torch")

RELEASES = ("modelscope", "huggingface")


@pytest.fixture(scope="module", params=RELEASES)
def release_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release_dir(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("data"))


def _funasr_texts(model_dir: Path, scp: Path, **options) -> dict[str, str]:
    reference = funasr_reference(model_dir)
    assert (reference.model.ctc_decoder is not None) == any(_is_ctc(name) for name in torch.load(model_dir / "model.pt"))
    return funasr_texts(reference, scp, **options)


def _is_ctc(name: str) -> bool:
    return name.startswith(("ctc_decoder.", "ctc."))


def test_layout_mirrors_the_release(release_dir: Path) -> None:
    config = yaml.safe_load((release_dir / "config.yaml").read_text(encoding="utf-8"))
    assert all(config[section]["freeze"] is True for section in ("audio_encoder_conf", "audio_adaptor_conf", "llm_conf"))
    assert config["llm_conf"]["llm_dtype"] == "bf16" and config["llm_conf"]["use_lora"] is False
    assert config["llm_conf"]["lora_conf"]["r"] == 16 and config["llm_conf"]["lora_conf"]["target_modules"] == ["q_proj", "v_proj"]
    assert config["ctc_decoder"] == "Transformer" and config["detach_ctc_decoder"] is True
    assert config["dataset_conf"]["ctc_tokenizer"] == "SenseVoiceTokenizer"
    assert config["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] is None  # mapped by configuration.json
    metas = json.loads((release_dir / "configuration.json").read_text(encoding="utf-8"))["file_path_metas"]
    assert metas["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] == "multilingual.tiktoken"
    assert (release_dir / "multilingual.tiktoken").is_file()
    assert not list((release_dir / "Qwen3-0.6B").glob("*.safetensors"))
    state = torch.load(release_dir / "model.pt")
    assert {tensor.dtype for tensor in state.values()} == {torch.bfloat16}
    assert state["llm.lm_head.weight"].untyped_storage().data_ptr() != state["llm.model.embed_tokens.weight"].untyped_storage().data_ptr()
    assert torch.equal(state["llm.lm_head.weight"], state["llm.model.embed_tokens.weight"])
    ctc = [name for name in state if _is_ctc(name)]
    if "modelscope" in str(release_dir):
        assert {name.split(".")[0] for name in ctc} == {"ctc_decoder", "ctc"}
    else:
        assert ctc == []


def test_load_without_allow_missing(release_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechft.model.build import load_model

    bundle = load_model(release_dir)
    has_ctc = "modelscope" in str(release_dir)
    assert bundle.ctc_head is has_ctc
    assert any(_is_ctc(name) for name in bundle.model.state_dict()) is has_ctc
    printed = capsys.readouterr().err
    if has_ctc:
        assert "CTC" not in printed
    else:
        assert "no CTC timestamp head" in printed and printed.count("\n") == 1


def test_partial_ctc_head_and_other_missing_keys_stay_errors(tmp_path: Path) -> None:
    from speechft.errors import InputError
    from speechft.model.build import load_model
    from speechft.testing.tiny_model import build_tiny_model_dir

    directory = build_tiny_model_dir(tmp_path / "ms", release="modelscope")
    state = torch.load(directory / "model.pt")
    full = dict(state)
    del state["ctc.ctc_lo.weight"]
    torch.save(state, directory / "model.pt")
    with pytest.raises(InputError, match=r"missing keys \(ctc\.ctc_lo\.weight\)"):
        load_model(directory)
    state = {name: tensor for name, tensor in full.items() if not _is_ctc(name) and name != "llm.model.norm.weight"}
    torch.save(state, directory / "model.pt")
    with pytest.raises(InputError, match=r"llm\.model\.norm\.weight"):
        load_model(directory)


def test_tokenizer_file_needed_only_with_ctc_weights(tmp_path: Path) -> None:
    from speechft.errors import InputError
    from speechft.model.build import load_model
    from speechft.testing.tiny_model import build_tiny_model_dir

    for release in RELEASES:
        directory = build_tiny_model_dir(tmp_path / release, release=release)
        (directory / "multilingual.tiktoken").unlink()
        if release == "huggingface":
            assert load_model(directory, announce=False).ctc_head is False
        else:
            with pytest.raises(InputError, match="multilingual.tiktoken"):
                load_model(directory)


@pytest.mark.slow
def test_decode_matches_funasr_automodel(runner, release_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    ours = speechft_texts(runner, release_dir, data_dir / "wav.scp", tmp_path / "hyp.txt")
    assert ours == _funasr_texts(release_dir, data_dir / "wav.scp")
    assert sum(1 for text in ours.values() if text) >= len(TEXTS) // 2


@pytest.fixture(scope="module")
def prepared(release_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    return prep_jsonl(CliRunner(), release_dir, data_dir, tmp_path_factory.mktemp("prep") / "train.jsonl")


def test_prep_writes_every_utterance(prepared: Path) -> None:
    lines = [json.loads(line) for line in prepared.read_text(encoding="utf-8").splitlines()]
    assert [line["key"] for line in lines] == [f"u{index}" for index in range(len(TEXTS))]
    assert all(line["text_length"] > 0 and line["speech_length"] > 0 for line in lines)


def _train(runner, model_dir: Path, train: Path, output: Path, profile: str, *overrides: str) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--profile",
            profile,
            "--model-dir",
            str(model_dir),
            "--train",
            str(train),
            "--output-dir",
            str(output),
            "--quiet",
            "max_steps=3",
            "optim.lr=1e-2",
            "schedule.warmup_fraction=0",
            "data.num_workers=0",
            "data.token_budget=400",
            "data.max_utterances_per_batch=2",
            "validation.every_steps=1",
            "validation.max_new_tokens=4",
            *overrides,
        ],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "profile, trained",
    [("small-data", {"audio_adaptor"}), ("medium-data", {"audio_encoder", "audio_adaptor"}), ("large-data", {"audio_encoder", "audio_adaptor", "llm"})],
)
def test_fine_tune_exports_what_it_trained_and_nothing_else(runner, release_dir: Path, prepared: Path, tmp_path: Path, profile: str, trained: set[str]) -> None:
    output = tmp_path / "run"
    _train(runner, release_dir, prepared, output, profile, "checkpoint.select=avg:2", "checkpoint.keep_last=3")
    base = torch.load(release_dir / "model.pt")
    exported = torch.load(output / "model.pt")
    # CTC absent in -> absent out; present in -> carried over (below, bit for bit).
    assert set(exported) == set(base)
    for name, tensor in exported.items():
        if name.split(".")[0] in trained:
            # encoder/adaptor in fp32; the LLM in llm_conf.llm_dtype, as funasr.AutoModel holds it
            assert tensor.dtype == (torch.bfloat16 if name.startswith("llm.") else torch.float32), name
        else:
            assert tensor.dtype == base[name].dtype and torch.equal(tensor, base[name]), name
    changed = {name.split(".")[0] for name in exported if not torch.equal(exported[name].to(base[name].dtype), base[name])}
    assert changed == trained
    # Tied embeddings: the exported lm_head is the averaged embed_tokens, never another value.
    assert torch.equal(exported["llm.lm_head.weight"], exported["llm.model.embed_tokens.weight"].to(exported["llm.lm_head.weight"].dtype))
    summary = json.loads((output / "train_summary.json").read_text(encoding="utf-8"))
    assert len(summary["selected"]) == 2
    if "llm" in trained:
        from speechft.train.checkpoint import CHECKPOINTS, TRAINABLE_FILE

        chosen = [torch.load(output / CHECKPOINTS / name / TRAINABLE_FILE) for name in summary["selected"]]
        average = sum(state["llm.model.embed_tokens.weight"].double() for state in chosen) / len(chosen)
        assert torch.equal(exported["llm.lm_head.weight"], average.to(torch.bfloat16))
        assert "llm.lm_head.weight" not in chosen[0]  # the tied alias is not stored twice


@pytest.mark.slow
def test_fine_tuned_output_decodes_the_same_in_funasr(runner, release_dir: Path, prepared: Path, data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    _train(runner, release_dir, prepared, output, "large-data", "checkpoint.select=best")
    for name in ("config.yaml", "configuration.json", "multilingual.tiktoken", "Qwen3-0.6B/tokenizer.json"):
        assert (output / name).exists(), name
    # The transcripts have no digits or punctuation, so prep chose the guide's no-normalisation
    # prompt; decode uses it by default (prompt.json), and funasr is asked for it with itn=False.
    assert json.loads((output / "prompt.json").read_text(encoding="utf-8"))["decode_prompt"] == "语音转写，不进行文本规整："
    ours = speechft_texts(runner, output, data_dir / "wav.scp", tmp_path / "hyp.txt")
    assert ours == _funasr_texts(output, data_dir / "wav.scp", itn=False)
