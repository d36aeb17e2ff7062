"""Tiny release-layout models, a small Kaldi data dir and the two decoders to compare, shared by
the release and LoRA tests."""

from __future__ import annotations

from pathlib import Path

from speech_fixtures import write_tone

from speechft.cli.app import app

TEXTS = ["one two", "three", "four five six", "seven", "eight nine", "ten", "turn on the light", "stop"]
MAX_TOKENS = 10


def make_release_talkative(directory: Path, seed: int = 1) -> None:
    """Noisier LLM weights so greedy decoding emits text; lm_head kept equal to the tied
    embeddings, as in the release file (ids 0 and 1 never produced)."""
    import torch

    state = torch.load(directory / "model.pt")
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if name.startswith("llm.") and tensor.ndim == 2 and name != "llm.lm_head.weight":
            state[name] = (tensor.float() + 0.3 * torch.randn(tensor.shape, generator=generator)).to(tensor.dtype)
    state["llm.model.embed_tokens.weight"][:2] = 0
    state["llm.lm_head.weight"] = state["llm.model.embed_tokens.weight"].clone()
    torch.save(state, directory / "model.pt")


def build_release_dir(root: Path, release: str) -> Path:
    """A talkative tiny model in `release`'s published layout."""
    from speechft.testing.tiny_model import build_tiny_model_dir

    directory = build_tiny_model_dir(root / "Fun-ASR-Nano-2512", seed=3, release=release)
    make_release_talkative(directory)
    return directory


def write_data_dir(root: Path) -> Path:
    """A Kaldi-style data dir (wav.scp + text) of short distinct tones, one per TEXTS entry."""
    scp, text = [], []
    for index, transcript in enumerate(TEXTS):
        audio = write_tone(root / f"u{index}.wav", 0.6 + 0.15 * index, 200.0 + 90.0 * index, seed=index)
        scp.append(f"u{index} {audio}\n")
        text.append(f"u{index} {transcript}\n")
    (root / "wav.scp").write_text("".join(scp), encoding="utf-8")
    (root / "text").write_text("".join(text), encoding="utf-8")
    return root


def prep_jsonl(runner, model_dir: Path, data_dir: Path, out: Path) -> Path:
    arguments = ["prep", "--scp", str(data_dir / "wav.scp"), "--text", str(data_dir / "text"), "--model-dir", str(model_dir), "--out", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return out


def funasr_reference(model_dir: Path):
    from funasr import AutoModel

    return AutoModel(model=str(model_dir), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)


def funasr_texts(reference, scp: Path, **options) -> dict[str, str]:
    """funasr's own AutoModel.generate, one utterance at a time."""
    from speechft.model.generate import clean_text

    texts = {}
    for line in scp.read_text(encoding="utf-8").splitlines():
        key, path = line.split()
        texts[key] = clean_text(reference.generate(input=[path], max_length=MAX_TOKENS, **options)[0]["text"])
    return texts


def speechft_texts(runner, model_dir: Path, scp: Path, output: Path) -> dict[str, str]:
    arguments = ["decode", "--model-dir", str(model_dir), "--scp", str(scp), "--output", str(output), "--batch-size", "4"]
    result = runner.invoke(app, [*arguments, "--max-new-tokens", str(MAX_TOKENS), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return dict(line.split("\t") for line in output.read_text(encoding="utf-8").splitlines())
