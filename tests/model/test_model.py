"""The model builder against funasr's own loader, on a tiny official-layout directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from speech_fixtures import write_tone

torch = pytest.importorskip("torch")

PROMPT = "语音转写："


@pytest.fixture(scope="module")
def talkative_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with noisier LLM weights so greedy decoding emits text, not an early stop."""
    directory = tmp_path_factory.mktemp("talkative") / "model"
    shutil.copytree(tiny_dir, directory)
    state = torch.load(directory / "model.pt")
    generator = torch.Generator().manual_seed(1)
    for name, tensor in state.items():
        if name.startswith("llm.") and tensor.ndim == 2:
            state[name] = tensor + 0.3 * torch.randn(tensor.shape, generator=generator)
    for name in ("llm.model.embed_tokens.weight", "llm.lm_head.weight"):
        state[name][:2] = 0  # never <|endoftext|> or <|im_start|>: texts stay non-empty
    torch.save(state, directory / "model.pt")
    return directory


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("wavs")
    return [write_tone(directory / f"w{i}.wav", seconds, 200.0 + 150 * i, seed=i) for i, seconds in enumerate((1.3, 2.05, 0.77))]


def _automodel(directory: Path):
    from funasr import AutoModel

    return AutoModel(model=str(directory), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)


def test_layout_is_official(tiny_dir: Path) -> None:
    config = yaml.safe_load((tiny_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "FunASRNano"
    assert config["audio_encoder"] == "SenseVoiceEncoderSmall"
    assert config["audio_adaptor"] == "Transformer"
    assert config["frontend_conf"]["dither"] == 0.0
    assert config["llm_conf"]["init_param_path"] == "Qwen3-0.6B"
    llm_config = json.loads((tiny_dir / "Qwen3-0.6B" / "config.json").read_text(encoding="utf-8"))
    assert llm_config["head_dim"] == 24 and llm_config["model_type"] == "qwen3"
    metas = json.loads((tiny_dir / "configuration.json").read_text(encoding="utf-8"))["file_path_metas"]
    assert metas["init_param"] == "model.pt" and metas["config"] == "config.yaml"
    assert {p.name for p in (tiny_dir / "Qwen3-0.6B").iterdir()} == {"config.json", "tokenizer.json", "tokenizer_config.json"}


def test_same_seed_same_weights(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.testing.tiny_model import build_tiny_model_dir

    again = build_tiny_model_dir(tmp_path / "again", seed=0)
    first, second = torch.load(tiny_dir / "model.pt"), torch.load(again / "model.pt")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(k.startswith("llm.") for k in first)


def test_logits_equal_funasr_automodel(tiny_dir: Path, wavs: list[Path]) -> None:
    from speechft.model.build import audio_token_count, load_model
    from speechft.model.inputs import compute_features, embed_inputs, pad_features, prompt_ids

    bundle = load_model(tiny_dir)
    reference = _automodel(tiny_dir)
    funasr_model = reference.model
    for wav in wavs:
        chat = funasr_model.generate_chatml(PROMPT, str(wav))
        embeds, _, _, source_ids, _ = funasr_model.inference_prepare(
            [chat], None, ["k"], reference.kwargs["tokenizer"], reference.kwargs["frontend"], device="cpu"
        )
        with torch.no_grad():
            expected = funasr_model.llm(inputs_embeds=embeds).logits
        waveform, _ = sf.read(wav, dtype="float32")
        features = compute_features(bundle.frontend, waveform)
        count = audio_token_count(int(features.shape[0]))
        ids, start = prompt_ids(bundle.tokenizer, PROMPT, count)
        assert ids == source_ids[0].tolist()
        speech, lengths = pad_features([features])
        with torch.no_grad():
            ours = embed_inputs(bundle.model, torch.tensor([ids]), speech, lengths, torch.tensor([start]), torch.tensor([count]))
            logits = bundle.model.llm(inputs_embeds=ours).logits
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_greedy_decode_equals_automodel_generate(talkative_dir: Path, wavs: list[Path]) -> None:
    from speechft.model.build import load_model
    from speechft.model.generate import clean_text, greedy_decode

    expected = [clean_text(r["text"]) for r in _automodel(talkative_dir).generate(input=[str(w) for w in wavs], max_length=20)]
    bundle = load_model(talkative_dir)
    waveforms = [sf.read(w, dtype="float32")[0] for w in wavs]
    texts = greedy_decode(bundle, waveforms, [PROMPT] * len(wavs), max_new_tokens=20)
    assert texts == expected
    assert all(texts)
    # batching must not change any row
    assert [greedy_decode(bundle, [w], [PROMPT], max_new_tokens=20)[0] for w in waveforms] == texts


def test_missing_keys_are_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.errors import InputError
    from speechft.model.build import load_model

    broken = tmp_path / "no-llm"
    shutil.copytree(tiny_dir, broken)
    state = torch.load(broken / "model.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("llm.")}, broken / "model.pt")
    with pytest.raises(InputError, match=r"missing keys \(llm\."):
        load_model(broken)
    bundle = load_model(broken, allow_missing=True)
    assert bundle.model is not None


def test_unexpected_keys_are_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.errors import InputError
    from speechft.model.build import load_model

    extra = tmp_path / "extra"
    shutil.copytree(tiny_dir, extra)
    state = torch.load(extra / "model.pt")
    state["ctc_decoder.linear.weight"] = torch.zeros(2, 2)
    torch.save(state, extra / "model.pt")
    with pytest.raises(InputError, match="unexpected keys"):
        load_model(extra)


def test_relative_llm_path_never_goes_to_a_hub(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.errors import InputError
    from speechft.model.build import load_model

    no_llm = tmp_path / "no-qwen"
    shutil.copytree(tiny_dir, no_llm)
    shutil.rmtree(no_llm / "Qwen3-0.6B")
    with pytest.raises(InputError, match="not a local folder"):
        load_model(no_llm)


def test_audio_token_count_matches_formula() -> None:
    from speechft.model.build import audio_token_count

    for frames in range(1, 200):
        o = 1 + (frames - 1) // 2
        o = 1 + (o - 1) // 2
        assert audio_token_count(frames) == (o - 1) // 2 + 1
        assert audio_token_count(frames) == (frames - 1) // 8 + 1
    assert np.isclose(audio_token_count(167) / 10.0, 2.1)  # about 2 tokens a second
