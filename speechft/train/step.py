"""One optimizer step: forward/backward over an accumulation group, then unscale -> clip -> step ->
zero_grad -> schedule, with one device-to-host transfer for everything the loop reports.

The loss, the gradient norm and (with several ranks) the sums over ranks stay on the device until
the step ends; one `.tolist()` brings them back, and the decision to skip a non-finite step is
taken from it. Under fp16 a :class:`LossScale` keeps the dynamic loss scale on the host, so that
reading it costs no synchronisation and a checkpoint carries it (exact resume).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from speechft.data.collate import Batch
from speechft.train import distributed as dist_tools
from speechft.train.config import TrainConfig
from speechft.train.metrics import StepStats

# torch.amp.GradScaler's defaults: start high, halve on an overflow, double after 2000 clean steps.
INITIAL_LOSS_SCALE = 2.0**16
GROWTH_INTERVAL = 2000


@dataclass
class LossScale:
    """fp16's dynamic loss scale. The GradScaler multiplies the loss, unscales the gradients and finds
    infs; the scale itself is decided here, on the host, from the step's (already transferred) norm."""

    scaler: Any  # torch.amp.GradScaler
    scale: float = INITIAL_LOSS_SCALE
    good_steps: int = 0

    def after_step(self, finite: bool) -> None:
        if not finite:
            self.scale, self.good_steps = self.scale / 2, 0
        else:
            self.good_steps += 1
            if self.good_steps == GROWTH_INTERVAL:
                self.scale, self.good_steps = self.scale * 2, 0
        self.scaler.update(self.scale)  # fills the device scale tensor: no transfer back


def make_loss_scale(autocast_dtype: Any, device: Any, scale: float, good_steps: int) -> LossScale | None:
    """A LossScale for fp16 autocast (None otherwise: bf16 and fp32 gradients need no scaling)."""
    import torch

    if autocast_dtype is not torch.float16:
        return None
    scaler = torch.amp.GradScaler(device.type, init_scale=scale)
    return LossScale(scaler, scale, good_steps)


def train_step(
    forward_module: Any,
    optimizer: Any,
    scheduler: Any,
    batches: Sequence[Batch],
    config: TrainConfig,
    *,
    world: dist_tools.World | None = None,
    step_target_tokens: int | None = None,
    loss_scale: LossScale | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> StepStats:
    """One optimizer step over `batches`, this rank's accumulation group.

    `forward_module(batch)` returns a batch's summed loss (:class:`TrainForward`, maybe wrapped in
    DDP/FSDP); `step_target_tokens` counts the target tokens of the step on every rank. The
    returned loss, audio seconds, samples and stopping ranks are sums over all ranks.
    """
    import torch

    world_size = world.world_size if world else 1
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    # Normalise by every target token of the step on every rank, so any split of one global batch
    # over ranks and micro-batches gives the same gradient; DDP and FSDP average over ranks, which
    # the world_size factor undoes.
    total_tokens = max(step_target_tokens if step_target_tokens is not None else sum(b.target_tokens for b in batches), 1)
    scale = world_size / total_tokens
    loss_sum: Any = 0.0
    for position, batch in enumerate(batches):
        last = position == len(batches) - 1
        # Gradients cross ranks once per step: on the last micro-batch only.
        sync = contextlib.nullcontext() if last or world is None else dist_tools.without_gradient_sync(forward_module, world)
        with sync:
            loss = forward_module(batch) * scale
            (loss_scale.scaler.scale(loss) if loss_scale else loss).backward()
        # float64 on the device: the same sum the host made of float(loss) / world_size, without a transfer per micro-batch.
        loss_sum = loss_sum + loss.detach().double() / world_size
    lr = optimizer.param_groups[0]["lr"]
    # The order matters and lives here: unscale (fp16 only; bf16 autocast keeps fp32 gradients)
    # -> clip -> step -> zero_grad -> schedule. Clipping a scaled gradient would clip the wrong norm.
    if loss_scale:
        loss_scale.scaler.unscale_(optimizer)
    max_norm = config.optim.grad_clip if config.optim.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    # The one transfer of the step. The norm is of the synchronised gradients, so every rank takes the same decision.
    loss_value, seconds, samples, stopping, norm = _to_host(
        world, grad_norm, [loss_sum, sum(b.seconds for b in batches), sum(len(b) for b in batches), stop_requested()]
    )
    finite = math.isfinite(norm)
    if finite:
        # Under fp16 the gradients are unscaled already and the norm found no inf: GradScaler.step would only repeat that check.
        optimizer.step()
    scale_used = loss_scale.scale if loss_scale else None
    if loss_scale:
        loss_scale.after_step(finite)
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    padding = sum(b.padding_fraction * len(b) for b in batches) / max(sum(len(b) for b in batches), 1)
    return StepStats(loss_value, norm, lr, seconds, padding, skipped=not finite, samples=int(samples), stopping_ranks=int(stopping), loss_scale=scale_used)


def _to_host(world: dist_tools.World | None, grad_norm: Any, summed: Sequence[Any]) -> list[float]:
    """`summed` (device tensors or host numbers) summed over ranks, then the gradient norm, in one device-to-host transfer."""
    import torch

    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor replicated on every rank
        grad_norm = grad_norm.full_tensor()
    device = grad_norm.device
    totals = torch.stack([torch.as_tensor(value, dtype=torch.float64).to(device) for value in summed])
    if world is not None and world.distributed:
        import torch.distributed as dist

        dist.all_reduce(totals)
    return torch.cat([totals, grad_norm.detach().double().reshape(1)]).tolist()
