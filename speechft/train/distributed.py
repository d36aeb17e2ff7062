"""Several processes training one model: the launcher, the process group, and what ranks share.

The distributed state is one small value, :class:`World` (rank, local rank, world size, device),
built by :func:`world_session` from the variables torchrun sets and torn down in its `finally`.
Without those variables the same code runs as a world of one, so the training loop has a single
path. `speechft train --nproc-per-node N` starts torchrun itself (:func:`torchrun_command`) with a
worker per rank that reads the run directory; a `speechft train` already started by torchrun or a
scheduler simply joins.

Modules:
- DDP wraps only the modules that can train (encoder, adaptor, LLM); the CTC head is not part of
  the wrapped module and never trains, so no `find_unused_parameters` is needed.
- FSDP2 (`fully_shard`) shards each LLM decoder layer, the encoder and the adaptor, then the rest,
  so parameters, gradients and AdamW moments are split across ranks. With bf16 on CUDA the weights
  are gathered in bf16 for compute and gradients reduced in fp32 (:func:`mixed_precision_policy`);
  validation gathers every unit once for the whole pass (:func:`full_parameters`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from speechft.errors import ConfigError, TrainingError

ALIVE_PREFIX = "speechft/alive/"


@dataclass(frozen=True)
class World:
    """Where this process stands among the ranks of one run."""

    rank: int
    local_rank: int
    world_size: int
    device: Any  # torch.device
    strategy: str = "ddp"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and talks to the terminal."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        return self.distributed and self.strategy == "fsdp"


def launched_by_torchrun() -> bool:
    """True when RANK and WORLD_SIZE are set: this process is one rank of a larger run."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(setting: str, local_rank: int = 0) -> Any:
    """`auto` | `cpu` | `cuda` | `cuda:N` -> torch.device; under torchrun each rank takes GPU LOCAL_RANK."""
    import torch

    name = setting
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {setting} requested but CUDA is not available")
    if name == "cuda" and launched_by_torchrun():
        name = f"cuda:{local_rank}"
    return torch.device(name)


@contextlib.contextmanager
def world_session(device_setting: str, *, strategy: str = "ddp", timeout_s: float = 600.0) -> Iterator[World]:
    """The process group for this run (gloo on CPU, nccl on CUDA), destroyed however the run ends.

    `timeout_s` bounds every collective: a rank that stops answering makes the others fail with
    an error instead of waiting forever.
    """
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        yield World(rank=0, local_rank=0, world_size=1, device=resolve_device(device_setting), strategy=strategy)
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield World(rank=rank, local_rank=local_rank, world_size=world_size, device=device, strategy=strategy)
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- what ranks share


def sum_across(world: World, values: Sequence[float]) -> list[float]:
    """Element-wise sum of `values` over all ranks (the values themselves in a world of one)."""
    if not world.distributed:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_from_main(world: World, value: Any) -> Any:
    """Rank 0's `value` (any picklable object) on every rank; also a barrier behind rank 0."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_to_main(world: World, value: Any) -> list[Any]:
    """Every rank's `value` on rank 0, in rank order (other ranks get an empty list)."""
    if not world.distributed:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world.world_size if world.is_main else []
    dist.gather_object(value, gathered if world.is_main else None, dst=0)
    return gathered


def mixed_precision_policy(device_type: str, autocast_dtype: Any) -> Any:
    """FSDP2's policy: with bf16 on CUDA, weights are gathered in bf16 for compute and gradients
    reduced in fp32 (the sharded weights and AdamW moments stay fp32); None (fp32 throughout) otherwise."""
    import torch

    if device_type != "cuda" or autocast_dtype != torch.bfloat16:
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def wrap_for_training(module: Any, world: World) -> Any:
    """`module` ready for this world: itself (one rank), DDP, or sharded with FSDP2 in place."""
    if not world.distributed:
        return module
    if world.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        policy = mixed_precision_policy(world.device.type, getattr(module, "autocast_dtype", None))
        options = {"mp_policy": policy} if policy is not None else {}
        # Each unit is gathered just before it runs and freed after; the rest (embeddings,
        # final norm, LM head) belongs to the root unit.
        for unit in [*module.llm.model.layers, module.audio_encoder, module.audio_adaptor, module]:
            fully_shard(unit, **options)
        return module
    from torch.nn.parallel import DistributedDataParallel

    # Buffers never change during training (no batch norm), so there is nothing to broadcast.
    return DistributedDataParallel(module, device_ids=[world.device.index] if world.device.type == "cuda" else None, broadcast_buffers=False)


def unwrap(module: Any) -> Any:
    """The module DDP wraps (FSDP2 shards in place, so it is its own module)."""
    return getattr(module, "module", module)


@contextlib.contextmanager
def without_gradient_sync(module: Any, world: World) -> Iterator[None]:
    """Accumulation micro-steps: keep gradients local; only the last backward of a step syncs."""
    if not world.distributed:
        yield
    elif world.strategy == "fsdp":
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        with module.no_sync():
            yield


@contextlib.contextmanager
def full_parameters(module: Any, world: World) -> Iterator[None]:
    """Every weight gathered once for a validation pass, then sharded again (FSDP2; nothing otherwise).

    Validation calls submodules directly, so the root unit's own hooks never gather its weights;
    and greedy decoding runs the LLM once per token, which would gather (and free) each layer again
    for every token. Gathering every unit up front, with resharding after forward switched off,
    leaves the decoding loop without collectives.
    """
    if not world.sharded:
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    # FSDP2 takes the first unit to run forward as the root; make sure that is the whole module,
    # also when validation comes before any training step (torch has no public call for this).
    module._get_fsdp_state()._lazy_init()
    units = [unit for unit in module.modules() if isinstance(unit, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            # Training's setting again: inner units free their weights after forward, the root keeps
            # its own (they are needed again at once by the backward).
            unit.set_reshard_after_forward(unit is not module, recurse=False)


# ------------------------------------------------------------------------------- lost ranks


def describe_lost_ranks(world: World, error: BaseException, *, wait_s: float = 5.0) -> str:
    """A message for a collective that failed: which ranks no longer answer.

    Every surviving rank announces itself in the rendezvous store and waits `wait_s` for the
    others; the ranks that never announce are named. If the store itself is gone, its host
    (rank 0, or the torchrun agent on node 0) is what died.
    """
    import torch.distributed as dist

    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        # The default store is the one the process group was built on; torch has no public getter.
        store = dist.distributed_c10d._get_default_store()
        store.set(f"{ALIVE_PREFIX}{world.rank}", "1")
        deadline = time.monotonic() + wait_s
        missing = list(range(world.world_size))
        while missing and time.monotonic() < deadline:
            missing = [rank for rank in missing if not store.check([f"{ALIVE_PREFIX}{rank}"])]
            if missing:
                time.sleep(0.2)
    except (RuntimeError, OSError) as store_error:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        return (
            f"rank {world.rank}: lost contact with the other ranks ({first_line}) and with the rendezvous store at "
            f"{where} ({str(store_error).strip().splitlines()[0] if str(store_error).strip() else type(store_error).__name__}): "
            "rank 0 or the node hosting the store is gone"
        )
    if missing:
        names = ", ".join(str(rank) for rank in missing)
        plural = "s" if len(missing) > 1 else ""
        return f"rank {world.rank}: rank{plural} {names} stopped responding ({first_line}); stopping this rank too"
    return f"rank {world.rank}: a collective operation failed although every rank is alive ({first_line})"


def collective_failure_types() -> tuple[type[BaseException], ...]:
    """Errors a collective raises when a peer dies or times out (gloo reports some as RuntimeError)."""
    import torch.distributed as dist

    return (dist.DistError, RuntimeError)


# -------------------------------------------------------------------------------- the launcher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun_command(program: Sequence[str], *, nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str, master_port: int) -> list[str]:
    """`python -m torch.distributed.run ... <program>` (e.g. `-m module RUN_DIR`): torchrun's own static rendezvous."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        f"--node-rank={node_rank}",
        f"--master-addr={master_addr}",
        f"--master-port={master_port}",
        *program,
    ]


def launch(command: Sequence[str]) -> int:
    """Run torchrun and wait for it; return its exit code.

    Ctrl-C reaches every process of the terminal's group, workers included, so this process
    ignores SIGINT and waits for them to checkpoint; a SIGTERM sent to this process alone is
    passed on to torchrun, which passes it to the workers.
    """
    import signal
    import subprocess

    process = subprocess.Popen(list(command))

    def forward(signal_number: int, _frame: Any) -> None:
        if signal_number == signal.SIGTERM:
            process.send_signal(signal.SIGTERM)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def quote_command(arguments: Sequence[str]) -> str:
    return shlex.join(list(arguments))


def raise_lost_ranks(world: World, error: BaseException) -> None:
    raise TrainingError(describe_lost_ranks(world, error)) from error
