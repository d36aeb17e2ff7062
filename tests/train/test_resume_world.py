"""Resume on a different number of ranks: a run stopped in mid-epoch (max_steps) on 2 gloo ranks
resumes on 1, and one stopped on 1 resumes on 2; over both runs every utterance of the epoch is
trained exactly once. Each process records the keys its training samples load (a sitecustomize
on PYTHONPATH wraps SpeechDataset.utterance_at for datasets read through a ManifestIndex)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from speech_fixtures import make_corpus, write_jsonl

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

RECORDER = """
import os
from speechft.data import dataset as _dataset
from speechft.data.index import ManifestIndex as _ManifestIndex

_original = _dataset.SpeechDataset.utterance_at


def _recorded(self, index):
    utterance = _original(self, index)
    if isinstance(self.utterances, _ManifestIndex):
        with open(os.path.join(os.environ["SPEECHFT_TEST_KEYS"], f"keys-{os.getpid()}.txt"), "a", encoding="utf-8") as handle:
            handle.write(utterance.key + "\\n")
    return utterance


_dataset.SpeechDataset.utterance_at = _recorded
"""

SETTINGS = [
    "trainable=adaptor",
    "data.num_workers=0",
    "data.dither=0",
    "data.max_utterances_per_batch=2",  # batches of two: a re-deal can halve one
    "data.token_budget=100000",
    "optim.grad_accum_steps=1",
    "max_epochs=1",
    "validation.max_utterances=1",
    "validation.max_new_tokens=2",
    "validation.every_steps=0",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return write_jsonl(root / "train.jsonl", make_corpus(root / "wav", 13))  # 12 train (6 batches), 1 held out


def train(tiny_dir: Path, corpus: Path, output: Path, keys: Path, ranks: int, *extra: str) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    hooks = output.parent / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(RECORDER, encoding="utf-8")
    python_path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH", "")]))
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=python_path, SPEECHFT_TEST_KEYS=str(keys))
    arguments = ["train", "--profile", "small-data", "--model-dir", str(tiny_dir), "--train", str(corpus), "--output-dir", str(output), "--quiet"]
    launch = ["--nproc-per-node", str(ranks)] if ranks > 1 else []
    done = subprocess.run(
        [sys.executable, "-m", "speechft", *arguments, *launch, *SETTINGS, *extra], capture_output=True, text=True, timeout=400, env=environment
    )
    assert done.returncode == 0, done.stderr[-3000:]


def trained_keys(keys: Path) -> Counter[str]:
    return Counter(line for path in keys.glob("keys-*.txt") for line in path.read_text(encoding="utf-8").split())


@pytest.mark.parametrize(("first", "second", "strategy"), [(2, 1, "ddp"), (1, 2, "ddp"), (2, 1, "fsdp")])
def test_a_mid_epoch_checkpoint_resumes_on_another_rank_count_and_trains_each_utterance_once(
    tiny_dir: Path, corpus: Path, tmp_path: Path, first: int, second: int, strategy: str
) -> None:
    from speechft.train.checkpoint import STATE_FILE, list_checkpoints

    output = tmp_path / "run"
    train(tiny_dir, corpus, output, tmp_path / "before", first, "max_steps=1", f"distributed.strategy={strategy}")
    saved = torch.load(list_checkpoints(output)[-1].path / STATE_FILE, weights_only=False)
    assert saved["world_size"] == first and saved["train_state"]["step"] == 1
    assert saved["train_state"]["batch_in_epoch"] == first  # global: every rank's batch of the step
    before = trained_keys(tmp_path / "before")
    assert sum(before.values()) == 2 * first

    train(tiny_dir, corpus, output, tmp_path / "after", second, "max_steps=0", f"distributed.strategy={strategy}", "--resume", "auto")
    after = trained_keys(tmp_path / "after")
    assert not set(before) & set(after), "an utterance trained twice"
    assert max((before + after).values()) == 1 and len(before + after) == 12, (before, after)
    final = torch.load(list_checkpoints(output)[-1].path / STATE_FILE, weights_only=False)["train_state"]
    assert final["epoch"] == 1 and final["batch_in_epoch"] == 0 and final["epoch_segments"] == []
