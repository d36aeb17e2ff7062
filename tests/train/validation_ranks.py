"""One rank of the sharded-validation tests: validate the tiny model on --val files and report what rank 0 saw.

torchrun starts it with 2 gloo ranks (`python -m torch.distributed.run ... validation_ranks.py ARGS`);
tests/train/test_validation_sharded.py also calls :func:`validate_files` in-process as a world of one.
Under FSDP2 it counts the all-gathers of each validation pass and checks that training still works after it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

OVERRIDES = ["trainable=adaptor,llm", "device=cpu", "data.num_workers=0", "data.dither=0", "validation.batch_size=2", "validation.max_new_tokens=6"]


def validate_files(model_dir: Path, train: Path, val_files: list[Path], world: Any) -> list[dict]:
    """Validation of the tiny model on each of `val_files`: loss, CER, examples and all-gathers made."""
    import torch
    import torch.distributed as dist

    from speechft.data.collate import collate
    from speechft.data.manifest import TrainSource
    from speechft.model.build import load_model
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.corpus import prepare_data
    from speechft.train.distributed import full_parameters, wrap_for_training
    from speechft.train.forward import TrainForward
    from speechft.train.modules import apply_trainable
    from speechft.train.run_dir import TrainRequest
    from speechft.train.validation import validate

    config = load_config(profiles_dir() / "small-data.yaml", OVERRIDES)
    bundle = load_model(model_dir, device="cpu")
    apply_trainable(bundle.model, config.trainable)
    forward = wrap_for_training(TrainForward(bundle.model, world.device, None), world)
    results = []
    # FSDP2 gathers weights with all_gather_single, looked up on torch.distributed at each call.
    with mock.patch.object(dist, "all_gather_single", wraps=dist.all_gather_single) as all_gather:
        for val in val_files:
            request = TrainRequest(model_dir=model_dir, train=(TrainSource(train),), output_dir=val.parent, config=config, val=val, dry_run=True)
            data = prepare_data(request, bundle, world)
            before = all_gather.call_count
            with full_parameters(forward, world):
                result = validate(bundle.model, bundle, data.val_samples, config, world.device, None, world)
            results.append({"loss": result.loss, "cer": result.cer, "examples": result.examples, "all_gathers": all_gather.call_count - before})
    # Training goes on after validation: the weights are sharded again and a step runs.
    first = next(bundle.model.llm.model.layers[0].parameters())
    local = first.to_local() if hasattr(first, "to_local") else first
    loss = forward(collate(data.val_samples[:1]))
    loss.backward()
    results.append({"layer_rows": int(local.shape[0]), "full_rows": int(first.shape[0]), "finite": bool(torch.isfinite(loss))})
    return results


def main(arguments: list[str]) -> None:
    """ARGUMENTS: model dir, train jsonl, output json, strategies (e.g. ddp,fsdp), --val files; one process group for all."""
    import dataclasses

    from speechft.train.distributed import world_session

    model_dir, train, output, strategies, *val_files = arguments
    with world_session("cpu") as world:
        results = {
            strategy: validate_files(Path(model_dir), Path(train), [Path(v) for v in val_files], dataclasses.replace(world, strategy=strategy))
            for strategy in strategies.split(",")
        }
        if world.is_main:
            Path(output).write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
