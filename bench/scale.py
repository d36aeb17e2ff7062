"""Benchmark the training data path at 1 M and 10 M manifest lines: index, epoch plan, dry run.

    .venv/bin/python bench/scale.py                                  # 1 M and 10 M lines, dry run at 2 M
    .venv/bin/python bench/scale.py --lines 1000000 --dry-run-lines 0
    git worktree add /tmp/before <commit>
    .venv/bin/python bench/scale.py --code /tmp/before --lines 1000000 2000000   # the same on older code

Synthetic jsonl files are written once into --workdir (about 330 bytes a line, in prep's layout:
valid lines for a tiny model directory; the audio paths do not exist, nothing opens them). Each
measurement runs in a fresh process with --code first on PYTHONPATH, and reports:
- `index`: reading the manifest into what training keeps (a ManifestIndex; on code without one,
  `read_manifest` + `filter_lengths` into a list of Utterances), seconds and the process's peak RSS;
- `plan`: one epoch's batches for rank 0 of 1 and of 8 ranks (TokenBatchSampler as training builds
  it), seconds each, and the peak RSS after both;
- `dry run`: `speechft train --profile medium-data --dry-run` over 1,000 lines (the fixed cost:
  imports and the tiny model) and over the --dry-run-lines file, wall seconds and peak RSS of the
  whole command.
Peak RSS is `ru_maxrss` of the measured process (resource.getrusage), not of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]


def write_manifest(path: Path, count: int, seed: int = 7) -> Path:
    """`count` valid lines in prep's layout: 1-20 s of speech, 3-60 transcript tokens, 2,000 speakers."""
    import numpy as np

    sys.path.insert(0, str(REPOSITORY))
    from speechft.data.manifest import chatml_line

    if path.exists() and path.stat().st_size and _line_count(path) == count:
        return path
    rng = np.random.default_rng(seed)
    frames = rng.integers(100, 2000, count)
    tokens = rng.integers(3, 61, count)
    characters = rng.integers(0, len(HAN), 64)
    transcript = "".join(HAN[int(c)] for c in characters)
    temporary = path.with_suffix(".partial")
    with open(temporary, "w", encoding="utf-8") as handle:
        for start in range(0, count, 100_000):
            lines = []
            for index in range(start, min(count, start + 100_000)):
                speaker = index % 2000
                key = f"spk{speaker:04d}-utt{index:08d}"
                text = transcript[: 2 + index % 40]
                lines.append(chatml_line(key, "语音转写：", f"/corpus/wav/spk{speaker:04d}/{key}.wav", text, int(frames[index]), int(tokens[index])) + "\n")
            handle.write("".join(lines))
    temporary.rename(path)
    return path


def _line_count(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_worker(manifest: Path, world_sizes: list[int]) -> dict[str, float]:
    """In a fresh process: index the manifest and plan epoch 0, as training does (default data settings)."""
    from speechft.data.sampler import TokenBatchSampler
    from speechft.train.config import DataConfig

    data = DataConfig()
    result: dict[str, float] = {"rss_imports_mib": _peak_rss_mib()}
    started = time.perf_counter()
    try:
        from speechft.data.index import ManifestIndex, filter_index_lengths
    except ImportError:  # code before the index
        from speechft.data.manifest import filter_lengths, read_manifest

        utterances, _ = read_manifest(manifest)
        utterances, _ = filter_lengths(utterances, max_sample_tokens=data.max_sample_tokens, min_speech_frames=data.min_speech_frames)
        lengths, sort_keys, count = [u.batch_tokens for u in utterances], [u.sort_key for u in utterances], len(utterances)
    else:
        index, _ = ManifestIndex.build([manifest])
        index, _ = filter_index_lengths(index, max_sample_tokens=data.max_sample_tokens, min_speech_frames=data.min_speech_frames)
        lengths, sort_keys, count = index.batch_tokens, index.sort_keys, len(index)
        result["index_bytes_per_line"] = index.nbytes / max(count, 1)
    result["lines"] = count
    result["index_s"] = time.perf_counter() - started
    result["rss_index_mib"] = _peak_rss_mib()
    for world_size in world_sizes:
        started = time.perf_counter()
        sampler = TokenBatchSampler(
            lengths,
            token_budget=data.token_budget,
            max_utterances=data.max_utterances_per_batch,
            sort_buffer=data.sort_buffer,
            sort_keys=sort_keys,
            world_size=world_size,
        )
        batches = len(sampler.epoch_batches(0))
        result[f"plan_{world_size}_s"] = time.perf_counter() - started
        result[f"batches_{world_size}"] = batches
    result["rss_plan_mib"] = _peak_rss_mib()
    return result


def run_measured(command: list[str], code: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, peak RSS MiB, result) of `command`, the peak that process's own (os.wait4)."""
    environment = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=environment, cwd=code)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024.0, subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())


def measure(manifest: Path, code: Path, world_sizes: list[int]) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(manifest), "--world-sizes", *map(str, world_sizes)]
    _, _, done = run_measured(command, code)
    if done.returncode:
        raise SystemExit(f"measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dry_run(manifest: Path, model: Path, code: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "speechft", "train", "--profile", "medium-data", "--dry-run", "--model-dir", str(model), "--train", str(manifest)]
    command += ["--output-dir", str(manifest.parent / "dry-run")]
    wall, peak, done = run_measured(command, code)
    if done.returncode:
        raise SystemExit(f"dry run failed:\n{done.stderr[-3000:]}")
    return wall, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", nargs="+", type=int, default=[1_000_000, 10_000_000])
    parser.add_argument("--dry-run-lines", type=int, default=2_000_000, help="0: no dry run")
    parser.add_argument("--world-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--code", type=Path, default=REPOSITORY, help="the speechft checkout to measure")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-scale")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_worker(args.worker, args.world_sizes)))
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    code = args.code.resolve()
    print(f"code {code}; load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs")
    print(f"{'lines':>10} {'index s':>8} {'B/line':>7} {'RSS MiB':>8} " + " ".join(f"{f'plan x{w} s':>10}" for w in args.world_sizes) + f" {'RSS MiB':>8}")
    for count in args.lines:
        manifest = write_manifest(args.workdir / f"train-{count}.jsonl", count)
        found = measure(manifest, code, args.world_sizes)
        per_line = f"{found['index_bytes_per_line']:7.1f}" if "index_bytes_per_line" in found else f"{'-':>7}"
        plans = " ".join(f"{found[f'plan_{w}_s']:10.2f}" for w in args.world_sizes)
        print(f"{count:>10} {found['index_s']:8.1f} {per_line} {found['rss_index_mib']:8.0f} {plans} {found['rss_plan_mib']:8.0f}", flush=True)
    if args.dry_run_lines:
        sys.path.insert(0, str(REPOSITORY))
        from speechft.testing.tiny_model import build_tiny_model_dir

        model = args.workdir / "model"
        if not (model / "model.pt").exists():
            build_tiny_model_dir(model, seed=0)
        # A thousand lines first: what the command costs before the data (imports, the tiny model).
        for count in (1000, args.dry_run_lines):
            manifest = write_manifest(args.workdir / f"train-{count}.jsonl", count)
            wall, peak = dry_run(manifest, model, code)
            print(f"dry run, {count} lines: {wall:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
