"""GPU training benchmark at the release's real dimensions, random weights, synthetic audio.

    .venv/bin/python bench/gpu.py                        # every profile, 1 GPU and all GPUs of the node
    .venv/bin/python bench/gpu.py --gpus 1 --steps 10    # 1-GPU figures only, shorter
    .venv/bin/python bench/gpu.py --tiny                 # CPU smoke test: tiny model, 3 steps per profile

Builds a model directory with Fun-ASR-Nano's dimensions (SenseVoice encoder 512-dim, 50 + 20 tp
blocks; adaptor 512 -> 2048 -> 1024, 2 layers; Qwen3-0.6B: 1024 hidden, 28 layers, 16/8 heads,
3072 MLP, 151,936-row vocabulary) and random weights (nothing is downloaded), and a corpus of
synthetic utterances of 5-15 s. Each profile then trains through `speechft train` (so with its own
loader, precision and `data.token_budget: auto`) for `--warmup` + `--steps` optimizer steps, on 1
GPU and on N GPUs (torchrun via `--nproc-per-node`); the figures come from the run's metrics.jsonl
over the steps after the warm-up:

- audio-hours per GPU-hour: audio trained / (wall time x GPUs)
- step time: wall seconds per optimizer step
- peak memory: torch.cuda.max_memory_allocated on rank 0
- MFU: model FLOPs / (wall time x GPUs x peak FLOP/s). Model FLOPs per token of a module are
  2 x its matmul parameters forward, + 2 x backward through it when anything at or before it
  trains (gradients for its input), + 2 x when its own weights train (gradients for them); tokens
  are the encoder's 60 ms frames, the adaptor's frames and the LLM's tokens (prompt + audio
  tokens + transcript), the output layer counting at transcript positions only. Attention's
  sequence-length term and padding are left out (model FLOPs, not hardware FLOPs). Peak: 989
  TFLOP/s dense bf16 on H100/H200, 312 on A100, else `--peak-tflops`.

Prints a table and writes the figures as JSON (`--json`, default gpu-bench.json in the work dir).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("small-data", "medium-data", "large-data", "llm-lora")
# What each profile trains, in pipeline order (encoder -> adaptor -> llm); lora: adapters on the frozen LLM.
TRAINS = {"small-data": {"adaptor"}, "medium-data": {"encoder", "adaptor"}, "large-data": {"encoder", "adaptor", "llm"}, "llm-lora": {"adaptor", "lora"}}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
QWEN3_VOCAB = 151_936
WORDS = "the of and to in is that for it with as was on be by this are from at or an speech model audio data".split()
PROMPT_TOKENS = 40  # system + user prompt + ChatML scaffolding, about


def release_shape() -> Any:
    from speechft.testing.tiny_model import TinyShape

    return TinyShape(
        encoder_dim=512,
        encoder_heads=4,
        encoder_linear_units=2048,
        encoder_blocks=50,
        encoder_tp_blocks=20,
        adaptor_ffn_dim=2048,
        adaptor_layers=2,
        adaptor_heads=8,
        llm_hidden=1024,
        llm_layers=28,
        llm_heads=16,
        llm_kv_heads=8,
        llm_head_dim=128,
        llm_intermediate=3072,
    )


def build_model(directory: Path, tiny: bool) -> Path:
    from speechft.testing.tiny_model import TinyShape, build_tiny_model_dir

    if (directory / "model.pt").exists():
        return directory
    started = time.monotonic()
    shape = TinyShape() if tiny else release_shape()
    build_tiny_model_dir(directory, seed=0, shape=shape, tokenizer_corpus=[" ".join(WORDS)], llm_vocab_size=None if tiny else QWEN3_VOCAB)
    print(f"model directory built in {time.monotonic() - started:.0f} s: {directory}", flush=True)
    return directory


def build_corpus(directory: Path, count: int, shortest_s: float, longest_s: float) -> Path:
    """`count` utterances of noise-and-tone audio, `shortest_s`..`longest_s` long, with word transcripts (~3 words/s)."""
    import numpy as np
    import soundfile

    from speechft.data.audio import fbank_frames_of

    manifest = directory / "train.jsonl"
    if manifest.exists():
        return manifest
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    lines = []
    for index in range(count):
        seconds = rng.uniform(shortest_s, longest_s)
        samples = int(seconds * 16000)
        t = np.arange(samples) / 16000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * np.random.default_rng(index).standard_normal(samples)
        path = directory / f"utt{index:05d}.wav"
        soundfile.write(path, wave.astype(np.float32), 16000)
        text = " ".join(rng.choice(WORDS) for _ in range(max(1, round(seconds * 3))))
        user = f"语音转写：<|startofspeech|>!{path}<|endofspeech|>"
        messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": user}, {"role": "assistant", "content": text}]
        lines.append({"key": f"utt{index:05d}", "messages": messages, "speech_length": fbank_frames_of(samples), "text_length": len(text.split())})
    manifest.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return manifest


@dataclass
class ModelFlops:
    """Matmul parameters per module and, per audio second of the corpus, the tokens each module sees."""

    encoder: int
    adaptor: int
    llm: int  # LLM matmul weights, without the embedding and the output layer
    output_layer: int
    encoder_tokens: float
    adaptor_tokens: float
    llm_tokens: float
    target_tokens: float

    def per_audio_second(self, profile: str) -> float:
        trains = TRAINS[profile]
        total, upstream = 0.0, False
        for module, parameters, tokens in (
            ("encoder", self.encoder, self.encoder_tokens),
            ("adaptor", self.adaptor, self.adaptor_tokens),
            ("llm", self.llm, self.llm_tokens),
            ("output_layer", self.output_layer, self.target_tokens),
        ):
            own = module in trains or (module == "output_layer" and "llm" in trains)
            upstream = upstream or own
            total += (2 + (2 if upstream else 0) + (2 if own else 0)) * parameters * tokens
        return total


def model_flops(model_dir: Path, manifest: Path) -> ModelFlops:
    import torch

    state = torch.load(model_dir / "model.pt", map_location="cpu", mmap=True, weights_only=True)
    sizes: dict[str, int] = {}
    for name, tensor in state.items():
        if tensor.dim() < 2:  # norms and biases: no matmul
            continue
        group = name.split(".")[0]
        if name.endswith("embed_tokens.weight"):
            group = "embedding"
        elif name.startswith("llm.lm_head"):
            group = "output_layer"
        sizes[group] = sizes.get(group, 0) + tensor.numel()
    seconds = frames = llm_tokens = targets = 0.0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        lfr = record["speech_length"] // 6 + 1
        audio_tokens = lfr // 8 + 1
        seconds += record["speech_length"] / 100
        frames += lfr
        llm_tokens += PROMPT_TOKENS + audio_tokens + record["text_length"] + 1
        targets += record["text_length"] + 1
    output_layer = sizes.get("output_layer", sizes.get("embedding", 0))
    return ModelFlops(
        sizes.get("audio_encoder", 0), sizes.get("audio_adaptor", 0), sizes.get("llm", 0), output_layer,
        frames / seconds, frames / seconds, llm_tokens / seconds, targets / seconds,
    )  # fmt: skip


def run_profile(args: argparse.Namespace, profile: str, gpus: int, model_dir: Path, manifest: Path, work: Path) -> dict[str, Any]:
    output = work / f"run-{profile}-{gpus}gpu"
    steps = args.warmup + args.steps
    weight = max(1, math.ceil(steps * gpus * 10 / args.utterances))  # up to 10 utterances a batch: enough batches for one epoch
    command = [sys.executable, "-m", "speechft", "train", "--profile", profile, "--model-dir", str(model_dir), "--train", f"{manifest}:{weight}"]
    command += ["--output-dir", str(output), "--overwrite", "--quiet", f"max_steps={steps}", "max_epochs=1", "log_every=1"]
    command += ["validation.held_out_fraction=0", "checkpoint.keep_last=1", f"data.num_workers={args.workers}", *args.override]
    if args.tiny:
        command += ["device=cpu"]
    elif gpus > 1:
        command += ["--nproc-per-node", str(gpus)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if done.returncode != 0:
        return {"profile": profile, "gpus": gpus, "error": done.stderr[-2000:]}
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    first, last = train[args.warmup - 1], train[-1]
    audio = last["audio_seconds_per_second"] * last["elapsed_s"] - first["audio_seconds_per_second"] * first["elapsed_s"]
    wall = last["elapsed_s"] - first["elapsed_s"]
    return {
        "profile": profile,
        "gpus": gpus,
        "steps_measured": last["step"] - first["step"],
        "step_time_s": wall / (last["step"] - first["step"]),
        "audio_seconds_per_second": audio / wall,
        "audio_hours_per_gpu_hour": audio / (wall * gpus),
        "peak_memory_gib": max((r.get("peak_memory_bytes") or 0) for r in train) / 1024**3,
        "token_budget": _chosen_budget(done.stderr),
        "run_s": time.monotonic() - started,
    }


def _chosen_budget(stderr: str) -> int | None:
    for line in stderr.splitlines():
        if line.startswith("token budget ") and ":" in line:
            return int(line.split()[2].rstrip(":"))
    return None


def peak_flops(args: argparse.Namespace) -> float | None:
    import torch

    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.tiny or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def print_table(results: list[dict[str, Any]], device: str) -> None:
    print(f"\n{device}")
    header = f"{'profile':<12} {'GPUs':>4} {'audio-h/GPU-h':>14} {'step s':>8} {'peak GiB':>9} {'MFU':>6} {'budget':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['profile']:<12} {r['gpus']:>4}  failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
        budget = str(r["token_budget"] or "-")
        rate, step, peak = r["audio_hours_per_gpu_hour"], r["step_time_s"], r["peak_memory_gib"]
        print(f"{r['profile']:<12} {r['gpus']:>4} {rate:>14.1f} {step:>8.3f} {peak:>9.2f} {mfu:>6} {budget:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: the tiny model, few short utterances, 3 steps")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--gpus", default="", help="GPU counts to run, e.g. 1,8 (default: 1 and every GPU of the node)")
    parser.add_argument("--steps", type=int, default=20, help="measured optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the measurement (allocator, kernels, loader)")
    parser.add_argument("--utterances", type=int, default=400, help="synthetic utterances (repeated as needed)")
    parser.add_argument("--workers", type=int, default=6, help="loader workers per rank")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the model, corpus and runs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (default: <work-dir>/gpu-bench.json)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, when not an H100/H200/A100")
    parser.add_argument("--override", nargs="*", default=["data.token_budget=auto"], help="KEY=VALUE config overrides for every run")
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.warmup, args.utterances, args.workers = min(args.steps, 3), 1, 12, 0
    import torch

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="speechft-gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    device = "cpu (smoke test)" if args.tiny else torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device; use --tiny to smoke-test on CPU")
    counts = [int(c) for c in args.gpus.split(",") if c] or sorted({1, torch.cuda.device_count() if not args.tiny else 1})
    model_dir = build_model(work / ("model-tiny" if args.tiny else "model-release"), args.tiny)
    manifest = build_corpus(work / ("corpus-tiny" if args.tiny else "corpus"), args.utterances, *((0.5, 1.5) if args.tiny else (5.0, 15.0)))
    flops, peak = model_flops(model_dir, manifest), peak_flops(args)
    results = []
    for gpus in counts:
        for profile in args.profiles.split(","):
            result = run_profile(args, profile, gpus, model_dir, manifest, work)
            if "error" not in result:
                rate = flops.per_audio_second(profile) * result["audio_seconds_per_second"]
                result["model_tflops_per_s"] = rate / 1e12
                result["mfu"] = rate / (peak * gpus) if peak else None
            results.append(result)
            print(json.dumps(result), flush=True)
    print_table(results, device)
    target = args.json or work / "gpu-bench.json"
    figures = {"device": device, "torch": torch.__version__, "flops": flops.__dict__, "results": results}
    target.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigures: {target}")
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
