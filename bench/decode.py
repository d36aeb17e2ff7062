"""Benchmark batched decoding: the same model and utterances at batch 1 and batched.

    .venv/bin/python bench/decode.py                       # mid-size model, 48 utterances
    .venv/bin/python bench/decode.py --batch-sizes 1 8 16 32 --utterances 64 --upstream

A mid-size Fun-ASR-Nano in the official layout is written to a temp dir (encoder 256-dim x 6
blocks, LLM 512 hidden x 4 layers, random weights made "talkative" so every utterance decodes to
`--max-new-tokens` tokens instead of stopping at random). Utterances are generated tones with
noise of 1-8 s. Each configuration decodes the whole set through `speechft.decode.run` (the code
path of `speechft decode`), audio loading included. `--upstream` also times funasr's
`AutoModel.generate` one utterance at a time, as the upstream decode.py does (without its VAD).
Prints utterances/s, audio-seconds/s and the speed-up over batch 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from model_fixtures import make_talkative  # noqa: E402

from speechft.data.audio import load_audio  # noqa: E402
from speechft.decode.inputs import DecodeItem  # noqa: E402
from speechft.decode.model import ModelTranscriber  # noqa: E402
from speechft.decode.run import DecodeOptions, decode_items  # noqa: E402
from speechft.model.build import load_model  # noqa: E402
from speechft.testing.tiny_model import MID_SIZE, build_tiny_model_dir  # noqa: E402

RATE = 16000
PROMPT = "语音转写："


def make_model(directory: Path) -> Path:
    base = build_tiny_model_dir(directory / "base", shape=MID_SIZE)
    return make_talkative(base, directory / "model")


def make_audio(directory: Path, count: int) -> list[DecodeItem]:
    rng = np.random.default_rng(0)
    items = []
    for index in range(count):
        seconds = 1.0 + 7.0 * rng.random()
        time_axis = np.arange(int(seconds * RATE)) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (150 + 20 * index) * time_axis) + 0.05 * rng.standard_normal(len(time_axis))
        path = directory / f"u{index:03d}.wav"
        soundfile.write(path, wave.astype(np.float32), RATE)
        items.append(DecodeItem(f"u{index:03d}", str(path), PROMPT))
    return items


def run_speechft(bundle, items, batch_size: int, max_new_tokens: int, output: Path) -> tuple[float, float]:
    transcriber = ModelTranscriber(bundle, max_new_tokens)
    started = time.perf_counter()
    summary = decode_items(items, transcriber, output, load_audio, DecodeOptions(batch_size=batch_size))
    return time.perf_counter() - started, summary.audio_seconds


def run_upstream(model_dir: Path, items, max_new_tokens: int) -> float:
    from funasr import AutoModel

    model = AutoModel(model=str(model_dir), disable_update=True, device="cpu", log_level="ERROR", disable_pbar=True)
    started = time.perf_counter()
    for item in items:
        model.generate(input=[item.source], max_length=max_new_tokens, batch_size=1)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--upstream", action="store_true", help="also time funasr AutoModel.generate at batch 1")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model_dir = make_model(root)
        (root / "audio").mkdir()
        items = make_audio(root / "audio", args.utterances)
        bundle = load_model(model_dir)
        parameters = sum(p.numel() for p in bundle.model.parameters())
        print(f"model: {parameters / 1e6:.1f} M parameters; {len(items)} utterances; max {args.max_new_tokens} new tokens; {args.threads} threads")
        run_speechft(bundle, items[:4], 4, 2, root / "warmup.txt")
        rates: dict[int, float] = {}
        audio_seconds = 0.0
        for batch_size in args.batch_sizes:
            elapsed, audio_seconds = run_speechft(bundle, items, batch_size, args.max_new_tokens, root / f"b{batch_size}.txt")
            rates[batch_size] = len(items) / elapsed
            print(f"speechft batch {batch_size:>3}: {elapsed:7.2f} s  {len(items) / elapsed:6.2f} utt/s  {audio_seconds / elapsed:7.2f} audio-s/s")
        outputs = {b: (root / f"b{b}.txt").read_text(encoding="utf-8") for b in args.batch_sizes}
        same = len(set(outputs.values())) == 1
        print(f"audio: {audio_seconds:.1f} s; identical output across batch sizes: {'yes' if same else 'NO'}")
        baseline = rates.get(1)
        if baseline:
            for batch_size, rate in rates.items():
                if batch_size != 1:
                    print(f"speed-up batch {batch_size} vs batch 1: {rate / baseline:.2f}x")
        if args.upstream:
            elapsed = run_upstream(model_dir, items, args.max_new_tokens)
            upstream_rate = len(items) / elapsed
            print(f"funasr AutoModel.generate batch 1: {elapsed:7.2f} s  {upstream_rate:6.2f} utt/s  {audio_seconds / elapsed:7.2f} audio-s/s")
            for batch_size, rate in rates.items():
                print(f"speechft batch {batch_size} vs funasr batch 1: {rate / upstream_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
