"""Stage 6, write: the jsonl (and validation jsonl), rejects, prompt sidecar and summary, each atomically."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechft.data.manifest import chatml_line
from speechft.data.prep.checks import KeptUtterance
from speechft.data.prep.options import PrepOptions
from speechft.data.prep.reasons import Rejection
from speechft.data.prep.split import Split
from speechft.data.prep.summary import PrepSummary
from speechft.data.prompts import PromptPolicy, PromptSidecar, sidecar_path_for
from speechft.errors import InputError
from speechft.io import atomic


def output_paths(options: PrepOptions) -> dict[str, str]:
    """Every file a run writes, by the name the summary lists it under."""
    outputs = {
        "jsonl": str(options.out),
        "rejects": str(options.rejects_path),
        "summary": str(options.summary_path),
        "prompt": str(sidecar_path_for(options.out)),
    }
    if options.val_path is not None:
        outputs["validation"] = str(options.val_path)
    return outputs


def write_manifests(options: PrepOptions, sides: Split) -> dict[str, int]:
    """Write the training jsonl (and the validation jsonl); returns the training lines' prompts, most used first."""
    policy = options.policy
    train_prompts = [policy.prompt_for(utterance.transcript) for utterance in sides.train]
    _write(options.out, map(manifest_line, sides.train, train_prompts))
    if options.val_path is not None:
        _write(options.val_path, (manifest_line(utterance, policy.prompt_for(utterance.transcript)) for utterance in sides.validation))
    return dict(Counter(train_prompts).most_common())


def manifest_line(utterance: KeptUtterance, prompt: str) -> str:
    return chatml_line(utterance.key, prompt, utterance.location, utterance.transcript, utterance.info.fbank_frames, utterance.text_length)


def write_rejects(path: Path, rejections: Sequence[Rejection]) -> None:
    """`key<TAB>reason<TAB>detail` per rejected key."""
    _write(path, (rejection.tsv_line() for rejection in rejections))


def write_sidecar(jsonl: Path, policy: PromptPolicy, prompts_used: dict[str, int]) -> None:
    """The prompt policy and the prompts used, which train and decode read back."""
    _write(sidecar_path_for(jsonl), [json.dumps(PromptSidecar(policy, prompts_used).to_json(), ensure_ascii=False, indent=2)])


def write_summary(path: Path, summary: PrepSummary) -> None:
    _write(path, [json.dumps(summary.to_json(), ensure_ascii=False, indent=2)])


def _write(path: Path, lines: Iterable[str]) -> None:
    try:
        atomic.write_lines(path, lines)
    except OSError as error:
        raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
