"""Benchmark training throughput: speechft's trainer against funasr's own trainer, same everything.

    .venv/bin/python bench/train.py                                  # tiny + mid, 3 profiles, 3 runs
    .venv/bin/python bench/train.py --sizes tiny --profiles small-data --runs 5
    .venv/bin/python bench/train.py --skip-upstream --override data.speech_buckets=16,32,64

Both trainers train the same model directory (tiny: `build_tiny_model_dir` defaults, ~0.9 M
parameters; mid: encoder 256-dim x 6 blocks, LLM 512 hidden x 4 layers; mid-vocab: mid with
Qwen3's 151,936-row embedding and output layer, as every real Fun-ASR-Nano has) on the same jsonl (an
espeak-ng corpus from examples/make_corpus.py, or `--corpus DIR` with wav.scp + text), with the
same token budget, utterances-per-batch cap, torch threads and loader workers, for a fixed number
of steps after a warm-up. Each measurement is its own process; speechft and upstream alternate
(the order flips every run) and the figures are medians over `--runs`.

speechft is measured through `run_training` (the code path of `speechft train`) with its step
function timed; upstream through ../shared/bench-ref/ref_train_throughput.py (funasr-train-ds
in-process, its only patch puts the device on CPU), with one more read-only hook here that notes
each batch's padding. Reported per (size, profile, trainer): audio-seconds per wall second, ms per
step, main-process CPU ms per step (less sensitive to other load on the machine), padding fraction
(padded positions of speech frames + LLM tokens), peak RSS of the main process and of the largest
loader worker. The ratio is speechft / upstream audio-seconds per second.

The measured window should lie within the first epoch and cover most of it: funasr's sampler walks
a sorted buffer from short to long utterances, so a window over its first few batches would see
only short audio (fewer audio-seconds per step for the same per-step cost), and at an epoch end
speechft validates and checkpoints. The defaults (240 utterances, about 24 batches; 2 + 20 + 1
steps) do that; the window then leaves out funasr's few shortest batches, which favours funasr.

Measure on an otherwise idle machine (the load average is printed with every run): under other
load funasr's trainer slowed down up to ~25x on 2 cores while speechft's barely moved, which
says more about the machine than about either trainer. With 1 thread and 1 worker they were
within ~10% of each other on the tiny model.

`--parity` also feeds the same fixed batches through funasr's FunASRNano.forward and speechft's
loss (dropout off on both sides) and trains a few steps from the same weights with each (constant
lr, same clipping), printing the per-step losses and the largest difference.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The shared reference harness sits beside the repository: ../shared/bench-ref/ from its root.
REFERENCE_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench-ref" / "ref_train_throughput.py"
PROFILES = {"small-data": "adaptor-only", "medium-data": "enc+adaptor", "large-data": "full"}


class _Done(BaseException):
    """Stops a trainer after the measured steps (BaseException: no trainer code catches it)."""


def _child_pids() -> list[int]:
    pids = []
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            pids += [int(x) for x in Path(f"/proc/self/task/{task}/children").read_text().split()]
    return pids


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _padding_fraction(speech_lengths: Any, speech_shape: Any, attention_mask: Any) -> float:
    """Padded share of (speech frames + LLM positions), the formula speechft's collate uses."""
    count = int(speech_shape[0])
    real = int(attention_mask.sum()) + int(speech_lengths.reshape(count, -1)[:, 0].sum())
    padded = count * int(attention_mask.shape[1]) + count * int(speech_shape[1])
    return 1.0 - real / padded if padded else 0.0


# ------------------------------------------------------------------------------ measured children


def child_speechft(args: argparse.Namespace) -> None:
    """Train with speechft's `run_training` and record every step's end."""
    import torch

    import speechft.train.loop as loop
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.run_dir import TrainRequest

    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps + 1
    overrides = [
        f"data.num_workers={args.workers}",
        f"data.token_budget={args.token_budget}",
        f"data.max_utterances_per_batch={args.max_utterances}",
        f"data.sort_buffer={args.sort_size}",
        f"max_steps={total + 1}",
        "validation.every_steps=0",
        "validation.max_utterances=4",
        # The upstream trainer has no augmentation: the same work on both sides.
        "augment.speed=false",
        *args.override,
    ]
    config = load_config(profiles_dir() / f"{args.profile}.yaml", overrides)
    record: dict[str, Any] = {"t": [], "cpu": [], "audio_s": [], "utts": [], "padding": []}
    original_step = loop.train_step

    def timed_step(model: Any, optimizer: Any, scheduler: Any, batches: Any, *rest: Any, **named: Any) -> Any:
        if "trainable" not in record:
            record["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            record["total"] = sum(p.numel() for p in model.parameters())
        stats = original_step(model, optimizer, scheduler, batches, *rest, **named)
        record["t"].append(time.perf_counter())
        record["cpu"].append(time.process_time())
        record["audio_s"].append(stats.audio_seconds)
        record["utts"].append(sum(len(b) for b in batches))
        record["padding"].append(stats.padding_fraction)
        if len(record["t"]) >= total:
            record["workers_hwm_mib"] = [_peak_rss_mib(pid) for pid in _child_pids()]
            raise _Done()
        return stats

    loop.train_step = timed_step
    request = TrainRequest(
        model_dir=Path(args.model_dir),
        train=(TrainSource(Path(args.train_jsonl)),),
        output_dir=Path(args.workdir) / "out",
        config=config,
        profile=args.profile,
        show_progress=False,
    )
    try:
        loop.run_training(request)
        record["finished"] = "ran out of data"
    except _Done:
        record["finished"] = "ok"
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would report the parent's peak.
    record["main_hwm_mib"] = _peak_rss_mib(os.getpid())
    record["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(record))


def child_upstream(args: argparse.Namespace) -> None:
    """Run the reference harness in this process, with a read-only hook noting padding and CPU time."""
    from funasr.train_utils import trainer_ds

    extra: dict[str, list[float]] = {"padding": [], "cpu": []}
    original_forward = trainer_ds.Trainer.forward_step
    original_update = trainer_ds.Trainer.update_step

    def forward_step(self: Any, model: Any, batch: dict[str, Any], loss_dict: dict[str, Any] = {}) -> Any:  # noqa: B006 (upstream's signature)
        if "speech" in batch and "attention_mask" in batch:
            extra["padding"].append(_padding_fraction(batch["speech_lengths"], batch["speech"].shape, batch["attention_mask"]))
        return original_forward(self, model, batch, loss_dict)

    def update_step(self: Any, *positional: Any, **named: Any) -> Any:
        result = original_update(self, *positional, **named)
        extra["cpu"].append(time.process_time())
        return result

    # Installed before the harness wraps these methods, so its wrappers call through ours.
    trainer_ds.Trainer.forward_step = forward_step
    trainer_ds.Trainer.update_step = update_step
    spec = importlib.util.spec_from_file_location("ref_train_throughput", args.reference)
    reference = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(reference)
    sys.argv = [
        str(args.reference),
        "_one",
        args.model_dir,
        args.train_jsonl,
        "--profile",
        PROFILES[args.profile],
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.token_budget),
        "--sort-size",
        str(args.sort_size),
        "--num-workers",
        str(args.workers),
        "--ncpu",
        str(args.threads),
        "--workdir",
        args.workdir,
        "--result",
        args.result,
        f"--extra=++dataset_conf.batch_size_sample_max={args.max_utterances}",
    ]
    reference.main()
    record = json.loads(Path(args.result).read_text())
    record["padding"] = extra["padding"][: len(record["t"])]
    record["cpu"] = extra["cpu"][: len(record["t"])]
    record["workers_hwm_mib"] = [k / 1024 for k in record.pop("workers_hwm_kib", [])]
    record.pop("main_hwm_kib")
    record["main_hwm_mib"] = _peak_rss_mib(os.getpid())  # the harness's ru_maxrss includes the parent's peak
    record["threads"] = record.pop("torch_threads")
    Path(args.result).write_text(json.dumps(record))


def summarize(record: dict[str, Any], warmup: int) -> dict[str, float]:
    """Rates over steps warmup+1 .. end, measured between step ends (as the reference does)."""
    t, cpu = record["t"], record["cpu"]
    steps = len(t) - 1 - warmup
    if steps <= 0:
        raise SystemExit(f"only {len(t)} steps ran ({record.get('finished')})")
    wall = t[-1] - t[warmup]
    audio = sum(record["audio_s"][warmup + 1 :])
    padding = record["padding"][warmup + 1 :]
    return {
        "audio_s_per_s": audio / wall,
        "ms_per_step": wall / steps * 1e3,
        "cpu_ms_per_step": (cpu[-1] - cpu[warmup]) / steps * 1e3 if len(cpu) == len(t) else float("nan"),
        "padding": statistics.fmean(padding) if padding else float("nan"),
        "utts_per_step": sum(record["utts"][warmup + 1 :]) / steps,
        "audio_s_per_step": audio / steps,
        "rss_main_mib": record["main_hwm_mib"],
        "rss_worker_mib": max(record.get("workers_hwm_mib") or [0.0]),
        "trainable": record.get("trainable") or 0,
        "total": record.get("total") or 0,
    }


def measure(trainer: str, model_dir: Path, jsonl: Path, profile: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    overrides = list(args.override)
    if trainer in args.variants:
        overrides += args.variants[trainer]
        trainer = "speechft"
    workdir = Path(tempfile.mkdtemp(prefix=f"{trainer}-", dir=scratch))
    result = workdir / "result.json"
    command = [
        sys.executable,
        __file__,
        f"_{trainer}",
        str(model_dir),
        str(jsonl),
        "--profile",
        profile,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--token-budget",
        str(args.token_budget),
        "--max-utterances",
        str(args.max_utterances),
        "--sort-size",
        str(args.sort_size),
        "--reference",
        str(args.reference),
        "--workdir",
        str(workdir),
        "--result",
        str(result),
    ]
    command += [f"--override={item}" for item in overrides]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode or not result.exists():
        raise SystemExit(f"{trainer} {profile} failed (rc={completed.returncode}):\n{completed.stderr[-3000:]}\nlogs in {workdir}")
    summary = summarize(json.loads(result.read_text()), args.warmup)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


# ----------------------------------------------------------------------------------------- setup


def make_corpus(scratch: Path, corpus: Path | None, utterances: int) -> Path:
    """A Kaldi-style dir (wav.scp + text): the given one, espeak-ng speech, or tones without espeak."""
    if corpus is not None:
        return corpus
    target = scratch / "corpus"
    if shutil.which("espeak-ng") and shutil.which("sox"):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/make_corpus.py"),
                "--out",
                str(target),
                "--domain-a-train",
                str(utterances),
                "--domain-b-train",
                "1",
                "--test",
                "1",
                "--replay",
                "1",
                "--jobs",
                "2",
            ],
            check=True,
            capture_output=True,
        )
        return target / "domain-a" / "train"
    import numpy as np
    import soundfile

    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    scp, text = [], []
    for index in range(utterances):
        seconds = 1.0 + 2.5 * rng.random()
        wave = 0.3 * np.sin(2 * np.pi * (150 + 7 * index) * np.arange(int(seconds * 16000)) / 16000) + 0.02 * rng.standard_normal(int(seconds * 16000))
        path = target / f"t{index:04d}.wav"
        soundfile.write(path, wave.astype(np.float32), 16000)
        scp.append(f"t{index:04d} {path}\n")
        text.append(f"t{index:04d} {' '.join(str(d) for d in rng.integers(0, 10, 4))}\n")
    (target / "wav.scp").write_text("".join(scp))
    (target / "text").write_text("".join(text))
    return target


def make_models(scratch: Path, sizes: list[str]) -> dict[str, Path]:
    from speechft.testing.tiny_model import MID_SIZE, QWEN3_VOCAB_SIZE, build_tiny_model_dir

    shapes = {"tiny": {}, "mid": {"shape": MID_SIZE}, "mid-vocab": {"shape": MID_SIZE, "llm_vocab_size": QWEN3_VOCAB_SIZE}}
    return {size: build_tiny_model_dir(scratch / size, seed=0, **shapes[size]) for size in sizes}


def make_jsonl(reference: Path, model_dir: Path, corpus: Path, out: Path, repeat: int) -> Path:
    """The upstream-style jsonl (Fun-ASR scp2jsonl layout); speechft reads the very same file."""
    subprocess.run(
        [sys.executable, str(reference), "make-jsonl", str(model_dir), str(corpus / "wav.scp"), str(corpus / "text"), str(out), "--repeat", str(repeat)],
        check=True,
        capture_output=True,
    )
    return out


# ---------------------------------------------------------------------------------------- parity


def _speechft_step(model: Any, optimizer: Any, scheduler: Any, batch: Any, config: Any, device: Any) -> Any:
    """speechft's `train_step` on one batch, whichever of its two signatures this checkout has."""
    import inspect

    from speechft.train.loop import train_step

    if "forward_module" in inspect.signature(train_step).parameters:
        from speechft.train.forward import TrainForward

        return train_step(TrainForward(model, device, None), optimizer, scheduler, [batch], config)
    return train_step(model, optimizer, scheduler, [batch], config, device, None)


def sort_padding(dataset: Any, args: argparse.Namespace) -> None:
    """Padding of one epoch's batches when buffers are sorted by the budget's sum vs by Utterance.sort_key."""
    from speechft.data.sampler import TokenBatchSampler
    from speechft.model.build import audio_token_count

    utterances = dataset.utterances
    first = dataset[0]
    prompt = len(first.input_ids) - first.audio_tokens - (len([x for x in first.labels if x >= 0]))
    frames = [int(dataset.frontend_frames(u)) if hasattr(dataset, "frontend_frames") else -(-u.speech_frames // 6) for u in utterances]
    tokens = [prompt + audio_token_count(f) + u.text_tokens + 1 for f, u in zip(frames, utterances)]
    lengths = [u.batch_tokens for u in utterances]
    for label, keys in (("sum of frames + tokens (before)", None), ("(LFR frames, tokens) (now)", [u.sort_key for u in utterances])):
        sampler = TokenBatchSampler(
            lengths, token_budget=args.token_budget, max_utterances=args.max_utterances, sort_buffer=args.sort_size, seed=0, sort_keys=keys
        )
        real = padded = 0
        for batch in sampler.epoch_batches(0):
            real += sum(frames[i] + tokens[i] for i in batch)
            padded += len(batch) * (max(frames[i] for i in batch) + max(tokens[i] for i in batch))
        print(f"  epoch padding, buffers sorted by {label}: {1 - real / padded:.1%}")


def parity(model_dir: Path, jsonl: Path, args: argparse.Namespace) -> None:
    """Per-batch losses on identical batches, and a few training steps from the same weights."""
    import torch

    from speechft.data.collate import collate
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.data.sampler import TokenBatchSampler
    from speechft.model.build import load_model
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.forward import batch_loss_sum
    from speechft.train.modules import apply_trainable
    from speechft.train.optim import make_optimizer

    torch.set_num_threads(args.threads)
    config = load_config(profiles_dir() / "small-data.yaml", ["schedule.warmup_fraction=0", "schedule.decay=constant", "augment.speed=false", *args.override])
    bundle = load_model(model_dir)
    apply_trainable(bundle.model, config.trainable)
    utterances, _ = read_manifest(jsonl)
    dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
    sampler = TokenBatchSampler(
        [u.batch_tokens for u in utterances], token_budget=args.token_budget, max_utterances=args.max_utterances, sort_buffer=args.sort_size, seed=0
    )
    batches = [collate([dataset[i] for i in indices]) for indices in sampler.epoch_batches(0)[: args.parity_steps]]
    device = torch.device("cpu")

    def funasr_loss(model: Any, batch: Any, rows: slice = slice(None)) -> Any:
        # FunASRNano.forward edits its inputs in place, so it gets copies; its loss is the mean over target tokens.
        loss, _, _ = model(
            speech=batch.speech[rows].clone(),
            speech_lengths=batch.speech_lengths[rows].clone(),
            input_ids=batch.input_ids[rows].clone(),
            attention_mask=batch.attention_mask[rows].clone(),
            labels_ids=batch.labels[rows].clone(),
            fbank_beg=batch.audio_starts[rows, None].clone().int(),
            fake_token_len=batch.audio_token_counts[rows, None].clone().int(),
        )
        return loss

    sort_padding(dataset, args)
    model = bundle.model
    model.eval()  # dropout off on both sides: the comparison is of the loss, not of random masks
    batched, single = [], []
    with torch.no_grad():
        for batch in batches:
            ours = float(batch_loss_sum(model, batch, device, None, track_grad=False)) / batch.target_tokens
            theirs = float(funasr_loss(model, batch))
            per_utterance = []
            for row in range(len(batch)):
                # one utterance at a time, trimmed: no padding anywhere, as funasr decodes
                sample = collate([batch.samples[row]])
                per_utterance.append((float(funasr_loss(model, sample)), sample.target_tokens))
            one_by_one = sum(loss * tokens for loss, tokens in per_utterance) / sum(tokens for _, tokens in per_utterance)
            batched.append(abs(ours - theirs))
            single.append(abs(ours - one_by_one))
    print(f"parity on {len(batches)} identical batches (padding {statistics.fmean(b.padding_fraction for b in batches):.1%}):")
    print(f"  max |speechft - funasr FunASRNano.forward, same padded batch|      = {max(batched):.2e}")
    print(f"  max |speechft - funasr FunASRNano.forward, one utterance at a time| = {max(single):.2e}")

    start = copy.deepcopy(model.state_dict())
    curves: dict[str, list[float]] = {"speechft": [], "funasr": [], "funasr-1by1": []}
    for name in curves:
        model.load_state_dict(start)
        model.eval()
        torch.manual_seed(0)
        if name == "speechft":
            optimizer, scheduler = make_optimizer(model, config, len(batches))
            for batch in batches:
                curves[name].append(_speechft_step(model, optimizer, scheduler, batch, config, device).loss)
        else:
            # upstream's step: mean loss, backward, clip the global norm, AdamW over every parameter.
            # funasr-1by1 runs each utterance of the batch alone (no padding) and weights its mean
            # loss by its target tokens: the same objective as the batch, without padding effects.
            optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)
            for batch in batches:
                if name == "funasr":
                    loss = funasr_loss(model, batch)
                    loss.backward()
                else:
                    loss = torch.zeros(())
                    for row in range(len(batch)):
                        sample = collate([batch.samples[row]])
                        part = funasr_loss(model, sample) * sample.target_tokens / batch.target_tokens
                        part.backward()
                        loss = loss + part.detach()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                optimizer.step()
                optimizer.zero_grad()
                curves[name].append(float(loss))
    model.load_state_dict(start)
    print(f"  {len(batches)} training steps from the same weights, same batches, constant lr {config.optim.lr:g}, clip {config.optim.grad_clip:g}:")
    print("  step  speechft  funasr    |diff|    funasr-1by1  |diff|")
    for step, (ours, theirs, alone) in enumerate(zip(curves["speechft"], curves["funasr"], curves["funasr-1by1"]), start=1):
        print(f"  {step:>4}  {ours:.5f}  {theirs:.5f}  {abs(ours - theirs):.1e}   {alone:.5f}     {abs(ours - alone):.1e}")
    for other in ("funasr", "funasr-1by1"):
        print(f"  max |speechft - {other}| over the curve = {max(abs(a - b) for a, b in zip(curves['speechft'], curves[other])):.2e}")


# ------------------------------------------------------------------------------------------ main


def _format(summary: dict[str, float]) -> str:
    return (
        f"{summary['audio_s_per_s']:8.1f} {summary['ms_per_step']:8.1f} {summary['cpu_ms_per_step']:8.1f} {summary['padding']:6.1%} "
        f"{summary['rss_main_mib']:7.0f} {summary['rss_worker_mib']:7.0f} {summary['audio_s_per_step']:6.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["tiny", "mid", "mid-vocab"], default=["tiny", "mid"])
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=list(PROFILES))
    parser.add_argument("--steps", type=int, default=20, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the measurement starts")
    parser.add_argument("--runs", type=int, default=3, help="runs per trainer; medians are reported")
    parser.add_argument("--workers", type=int, default=2, help="loader workers, both trainers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both trainers")
    parser.add_argument("--token-budget", type=int, default=6000)
    parser.add_argument("--max-utterances", type=int, default=10, help="utterances-per-batch cap, both trainers")
    parser.add_argument("--sort-size", type=int, default=1024, help="length-sorting buffer, both trainers")
    parser.add_argument("--utterances", type=int, default=240, help="generated corpus size (repeated --repeat times)")
    parser.add_argument("--repeat", type=int, default=1, help="keep warmup + steps + 1 within one epoch (see the docstring)")
    parser.add_argument("--corpus", type=Path, default=None, help="a dir with wav.scp + text instead of a generated corpus")
    parser.add_argument("--override", action="append", default=[], help="speechft config override key=value (repeatable)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="another speechft row, NAME:key=value;key=value (e.g. 'ckpt:activation_checkpointing=true', 'buckets:data.speech_buckets=[16,32,48,64]')",
    )
    parser.add_argument("--reference", type=Path, default=REFERENCE_SCRIPT)
    parser.add_argument("--skip-upstream", action="store_true")
    parser.add_argument("--parity", action="store_true", help="also compare losses on identical batches")
    parser.add_argument("--parity-steps", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder")
    args = parser.parse_args()

    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    scratch.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(scratch, args.corpus, args.utterances)
    models = make_models(scratch, args.sizes)
    args.variants = {}
    for text in args.variant:
        name, _, overrides = text.partition(":")
        args.variants[name] = [item for item in overrides.split(";") if item]
    trainers = ["speechft", *args.variants] + ([] if args.skip_upstream else ["upstream"])
    print(
        f"corpus {corpus}; {args.steps} steps after {args.warmup} warm-up; {args.runs} runs; workers {args.workers}; threads {args.threads}; "
        f"token budget {args.token_budget}; <= {args.max_utterances} utterances/batch; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for size, model_dir in models.items():
        jsonl = make_jsonl(args.reference, model_dir, corpus, scratch / f"{size}.jsonl", args.repeat)
        if args.parity:
            print(f"--- {size}")
            parity(model_dir, jsonl, args)
        for profile in args.profiles:
            results: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
            for run in range(args.runs):
                order = trainers if run % 2 == 0 else trainers[::-1]
                for name in order:
                    results[name].append(measure(name, model_dir, jsonl, profile, args, scratch))
                    print(f"  {size:4} {profile:11} run {run + 1} {name:10} {_format(results[name][-1])}   load {os.getloadavg()[0]:.1f}", flush=True)
            medians = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
            rows.append((size, profile, medians))
    print()
    print("size profile      trainer     audio-s/s  ms/step  cpu-ms  pad     rss-MiB worker audio/step ratio  trainable/total")
    for size, profile, medians in rows:
        for name, summary in medians.items():
            ratio = ""
            if name != "upstream" and "upstream" in medians:
                ratio = f"{summary['audio_s_per_s'] / medians['upstream']['audio_s_per_s']:5.2f}x"
            print(f"{size:4} {profile:12} {name:10} {_format(summary)}  {ratio:7} {int(summary['trainable']):,}/{int(summary['total']):,}")
    print(f"(medians of {args.runs}; load average at the end {os.getloadavg()[0]:.1f}; scratch {scratch})")
    return 0


def _child_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trainer")
    parser.add_argument("model_dir")
    parser.add_argument("train_jsonl")
    parser.add_argument("--profile", required=True)
    for name in ("steps", "warmup", "workers", "threads", "token-budget", "max-utterances", "sort-size"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args()
    (child_speechft if args.trainer == "_speechft" else child_upstream)(args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_speechft", "_upstream"):
        _child_main()
    else:
        sys.exit(main())
