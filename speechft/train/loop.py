"""The fine-tuning recipe: setup -> fit -> train_step -> validate -> finish, over a small TrainState.

`run_training(request)` runs one rank of a run (a world of one without torchrun). Every rank
starts from the run directory (:mod:`speechft.train.run_dir`): the resolved config and request the
launcher wrote there. Setup builds the model with the shared builder, freezes what the profile
does not train (frozen modules stay in eval mode and out of the optimizer), reads the data and
resumes from a checkpoint if asked. `fit` runs epochs of accumulation groups; every rank trains
on its shard of each epoch's batches; validation (teacher-forced loss, and the CER `speechft
score` would report for greedy transcripts) and an atomic checkpoint come every
`validation.every_steps` steps and at each epoch's end. `finish` makes the output directory a
model directory from the selected checkpoint(s). Rank 0 alone writes files and talks to the
terminal; SIGINT/SIGTERM finish the current step, write a checkpoint and end the run cleanly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

from speechft import console
from speechft.data.collate import Batch, make_loader
from speechft.errors import TrainingError
from speechft.model.build import load_model
from speechft.train import checkpoint as ckpt
from speechft.train import distributed as dist_tools
from speechft.train import export, faults, lora, output_dir, stopping
from speechft.train.config import TrainConfig
from speechft.train.corpus import prepare_data
from speechft.train.metrics import RunLog, StepStats, announce_start, write_curves
from speechft.train.modules import apply_trainable, autocast_for, set_train_mode
from speechft.train.optim import make_optimizer
from speechft.train.plan import plan_steps, provisional, settle_strategy, settle_token_budget
from speechft.train.run_dir import STOPPED_FILE, TrainRequest, TrainResult, read_run, settled, write_run, write_summary
from speechft.train.speed import apply_speed_switches
from speechft.train.state import Run, TrainState
from speechft.train.step import make_loss_scale, train_step
from speechft.train.validation import Validation, validate


def run_training(request: TrainRequest, world: dist_tools.World | None = None) -> TrainResult:
    """Train one fine-tuning run on this rank of `world` (without one, a world of its own)."""
    if world is None:
        settings = request.config.distributed
        with dist_tools.world_session(request.config.device, strategy=settings.strategy, timeout_s=settings.timeout_s) as world:
            return run_training(request, world)
    started = time.monotonic()
    output_dir.check_output_dir(request.output_dir)
    output_dir.check_shared_output_dir(request.output_dir, world)
    request = share_run(request, world)
    try:
        run, state = setup(request, world)
        with faults.GracefulStop() as stop:
            last_loss = fit(run, state, stop)
        if stop.requested:
            return _stopped(run, state, last_loss, stop.signal_name or "a signal", started)
        faults.stop_if_mostly_skipped(run, state)
        return finish(run, state, last_loss, started)
    except dist_tools.collective_failure_types() as error:
        if not world.distributed or isinstance(error, TrainingError):
            raise
        dist_tools.raise_lost_ranks(world, error)
        raise  # unreachable: raise_lost_ranks always raises


def share_run(request: TrainRequest, world: dist_tools.World) -> TrainRequest:
    """The request every rank trains from: rank 0's reading of the run directory, so no rank can
    act on a stale copy. Unless the launcher wrote it there, rank 0 checks the directory and writes it first."""
    if not request.output_dir_checked:
        output_dir.prepare_output_dir_on_ranks(request, world)
        ready = settled(request)  # on every rank: a --resume that is no checkpoint fails everywhere alike
        if world.is_main:
            write_run(ready)
    return dist_tools.broadcast_from_main(world, read_run(request.output_dir) if world.is_main else None)


def setup(request: TrainRequest, world: dist_tools.World) -> tuple[Run, TrainState]:
    """Model, data, optimizer and counters of this rank, resumed from a checkpoint if asked."""
    from speechft.train.forward import TrainForward

    config = request.config
    device, autocast_dtype = autocast_for(config, world.device)
    # Every rank draws its own dropout masks and dither; weights come from model.pt, identical everywhere.
    ckpt.seed_everything(config.seed + world.rank)
    bundle = load_model(request.model_dir, device=str(device), allow_missing=request.allow_missing, announce=world.is_main)
    model = bundle.model
    if world.is_main and bundle.ctc_head and "encoder" in config.trainable:
        console.err.print(
            "[yellow]the CTC timestamp head stays frozen and is exported as it was; with the encoder fine-tuned, "
            "its timestamps may drift (transcripts come from the LLM and are unaffected)[/]",
            soft_wrap=True,
        )
    if config.lora.enabled:
        # Before freezing and wrapping: the adapters are parameters DDP/FSDP and the optimizer must see.
        lora.apply_lora(model, config.lora, config.seed)
    counts = apply_trainable(model, config.trainable)
    apply_speed_switches(model, config)
    if world.is_main:
        output_dir.check_room_for_run(request.output_dir, model, sum(count.trainable for count in counts.values()), config.checkpoint)
    data = prepare_data(provisional(request), bundle, world)
    config, data, budget = settle_token_budget(config, data, model, counts, autocast_dtype, device, world)
    if world.is_main and budget.reason != "set in the config":
        console.err.print(f"token budget {budget.token_budget}: {budget.reason}", soft_wrap=True)
    request = replace(request, config=config)
    resume_from = ckpt.resume_point(request.output_dir, request.resume)
    faults.check_skips_before_training(request.output_dir, world, data, request.config.data.max_skip_fraction, fresh=resume_from is None)
    _, _, total_steps = plan_steps(config, data, ckpt.moved_position(resume_from, world.world_size) if resume_from else None)
    world = settle_strategy(config, world, model, counts, data, autocast_dtype)
    forward_module = dist_tools.wrap_for_training(TrainForward(model, device, autocast_dtype), world)
    # After wrapping: FSDP2 replaces parameters by their shards, which the optimizer must hold.
    optimizer, scheduler = make_optimizer(model, config, total_steps)
    # A line may fail both as a validation and as a training sample: count utterances, not failures.
    skipped_keys = sorted({skip.key for skip in data.skipped})
    state = TrainState(skipped_samples=len(skipped_keys), skipped_keys=skipped_keys)
    if resume_from is not None:
        state = TrainState(
            **ckpt.resume_training(resume_from, model=model, forward_module=forward_module, optimizer=optimizer, scheduler=scheduler, world=world)
        )
    loss_scale = make_loss_scale(autocast_dtype, device, state.loss_scale, state.loss_scale_good_steps)
    cadence = stopping.validation_cadence(config, data, total_steps)
    run = Run(
        request, config, world, bundle, data, forward_module, optimizer, scheduler, total_steps, autocast_dtype, validate_every=cadence, loss_scale=loss_scale
    )
    if world.is_main:
        announce_start(run, state, resume_from)
    return run, state


def fit(run: Run, state: TrainState, stop: faults.GracefulStop) -> float | None:
    """The loop: epochs of accumulation groups; validate + checkpoint every N steps and per epoch.

    Before each step the ranks sum three numbers: target tokens (the loss normaliser), ranks with
    nothing readable (then all skip the step) and ranks that saw new skipped samples. After it they
    sum the loss, audio seconds, samples and the ranks asked to stop: then all checkpoint and
    return before loading the next batches, whose loading would move the RNG past the checkpoint.
    """
    config, request = run.config, run.request
    set_train_mode(run.bundle.model, config.trainable)
    with RunLog(request.output_dir, main=run.world.is_main, show_progress=request.show_progress, log_every=config.log_every) as log:
        log.start(run.data, total_steps=run.total_steps, step=state.step, epoch=state.epoch, skipped_utterances=state.skipped_samples)
        loader = _make_loader(run)
        while state.epoch < config.max_epochs and state.step < run.total_steps and not state.early_stopped:
            whole_epoch, steps_before = state.batch_in_epoch == 0 and not state.epoch_segments, state.step
            if _train_epoch(run, state, stop, log, loader):
                return log.last_loss
            if state.early_stopped or (state.step >= run.total_steps and state.batch_in_epoch < run.data.sampler.epoch_global_batches()):
                break  # stopped early or by max_steps inside the epoch; the counters say where
            if whole_epoch and state.step == steps_before:
                faults.stop_if_mostly_skipped(run, state, nothing_trained=f"epoch {state.epoch + 1} made no optimizer step")
            state.epoch += 1
            state.batch_in_epoch, state.epoch_segments = 0, []
            if state.last_validated_step != state.step:
                result = _validate_and_checkpoint(run, state, log)
                if result is not None:
                    log.epoch_done(state.epoch, state.step, result.loss, result.cer)
            if state.epoch == 1:
                # Every utterance has been tried once: a resume after raising the limit loses no work.
                faults.stop_if_mostly_skipped(run, state)
        if state.last_validated_step != state.step:
            _validate_and_checkpoint(run, state, log)
    return log.last_loss


def _make_loader(run: Run) -> Any:
    """The run's loader: its worker processes start once and serve every epoch."""
    config = run.config
    generator = _loader_generator(config.seed, run.world.rank)
    pin = run.world.device.type == "cuda"
    return make_loader(run.data.dataset, run.data.sampler, config.data.num_workers, generator, seed=config.seed, pin_memory=pin)


def _train_epoch(run: Run, state: TrainState, stop: faults.GracefulStop, log: RunLog, loader: Any) -> bool:
    """The rest of the current epoch; True when a stop was asked (every rank has checkpointed)."""
    config = run.config
    run.data.sampler.set_epoch(state.epoch, start=state.batch_in_epoch, segments=state.epoch_segments)
    batches = iter(loader)
    while state.step < run.total_steps and not state.early_stopped:
        group = _take(batches, config.optim.grad_accum_steps)
        if not group:
            return False
        if _train_group(run, state, group, stop, log):
            return True
    return False


def _train_group(run: Run, state: TrainState, group: list[Batch], stop: faults.GracefulStop, log: RunLog) -> bool:
    """One accumulation group: one optimizer step unless some rank has nothing readable in it."""
    config, world = run.config, run.world
    usable = [b for b in group if len(b)]
    skips = [s for b in group for s in b.skipped if s.key not in state.skipped_keys]
    step_tokens, empty_ranks, skipping_ranks = dist_tools.sum_across(world, [sum(b.target_tokens for b in usable), 0 if usable else 1, 1 if skips else 0])
    state.batch_in_epoch += len(group) * world.world_size  # every rank took as many
    new = faults.note_skips(world, run.request.output_dir, state.skipped_keys, skips, skipping_ranks > 0, state.step)
    state.skipped_keys += [skip.key for skip in new]
    state.skipped_samples += len(new)
    if empty_ranks:
        return False  # some rank has no readable sample in this group: every rank skips it
    # The step sums loss, audio seconds, samples and the ranks asked to stop in its one transfer.
    stats = train_step(
        run.forward_module,
        run.optimizer,
        run.scheduler,
        usable,
        config,
        world=world,
        step_target_tokens=int(step_tokens),
        loss_scale=run.loss_scale,
        stop_requested=lambda: stop.requested,
    )
    state.step += 1
    state.audio_seconds += stats.audio_seconds
    if state.epoch == 0:
        state.first_epoch_samples += stats.samples
    if run.loss_scale is not None:
        state.loss_scale, state.loss_scale_good_steps = run.loss_scale.scale, run.loss_scale.good_steps
    _count_nonfinite(state, stats, config)
    log.step(state.step, state.epoch, stats.loss, stats, stats.audio_seconds, skipped=state.skipped_samples, nonfinite=state.nonfinite_steps)
    if run.validate_every and state.step % run.validate_every == 0:
        _validate_and_checkpoint(run, state, log)
    if not stats.stopping_ranks:
        return False
    if state.last_validated_step != state.step:
        _validate_and_checkpoint(run, state, log, validation=False)
    stop.signal_name = stop.signal_name or "a signal on another rank"
    return True


def _count_nonfinite(state: TrainState, stats: StepStats, config: TrainConfig) -> None:
    """A non-finite step was skipped; too many in a row means training has diverged: stop.

    Under fp16 a finite loss with overflowing gradients is the loss scale being too high: the
    scale halves and the run goes on; only when it has fallen below 1 do such steps count as divergence."""
    if not stats.skipped:
        state.nonfinite_in_a_row = 0
        return
    state.nonfinite_steps += 1
    if stats.loss_scale is not None and math.isfinite(stats.loss) and stats.loss_scale >= 1:
        console.err.print(f"[dim]step {state.step}: fp16 gradients overflowed at loss scale {stats.loss_scale:g}; update skipped, scale halved[/]")
        return
    state.nonfinite_in_a_row += 1
    console.err.print(f"[yellow]step {state.step}: non-finite loss or gradient (loss {stats.loss}, grad norm {stats.grad_norm}), update skipped[/]")
    limit = config.optim.max_nonfinite_steps
    if state.nonfinite_in_a_row >= limit:
        raise TrainingError(
            f"{state.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or gradient (up to step {state.step}); "
            f"training has diverged. Lower optim.lr, check the data, or raise optim.max_nonfinite_steps (now {limit}). "
            "The last checkpoint holds finite weights."
        )


def _validate_and_checkpoint(run: Run, state: TrainState, log: RunLog, *, validation: bool = True) -> Validation | None:
    """Validate (each rank decodes its share; FSDP gathers the weights once for it) and checkpoint."""
    config, world, model = run.config, run.world, run.bundle.model
    result = None
    if validation and run.data.val_samples:
        with dist_tools.full_parameters(run.forward_module, world):
            result = validate(model, run.bundle, run.data.val_samples, config, world.device, run.autocast_dtype, world)
        set_train_mode(model, config.trainable)
        log.validation(state.step, state.epoch, result.loss, result.cer, run.data)
        stopping.note_validation(run, state, result.cer)
    state.last_validated_step = state.step
    ckpt.save_training_checkpoint(
        run.request.output_dir,
        state.step,
        model=model,
        forward_module=run.forward_module,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        world=world,
        train_state=asdict(state),
        keep_last=config.checkpoint.keep_last,
        keep_best=config.checkpoint.average_count,
        val_cer=result.cer if result else None,
        val_loss=result.loss if result else None,
    )
    return result


def finish(run: Run, state: TrainState, last_loss: float | None, started: float) -> TrainResult:
    """Write model.pt from the selected checkpoint(s) and the rest of the model directory (rank 0)."""
    request, world, select = run.request, run.world, run.config.checkpoint.select
    # Under FSDP the frozen weights are sharded too: gather them whole (every rank takes part).
    whole = ckpt.whole_weights(run.forward_module, world) if world.sharded else {}
    chosen = export.selected_checkpoints(request.output_dir, select)
    if world.is_main:
        chosen = export.export_model(request.output_dir, run.bundle, select, whole, lora=run.config.lora)
        export.copy_prompt_policy(request.train, request.output_dir)
        write_curves(request.output_dir)
    best = [c.val_cer for c in chosen if c.val_cer is not None]
    result = TrainResult(
        output_dir=request.output_dir,
        steps=state.step,
        final_loss=last_loss,
        best_val_cer=min(best) if best else None,
        selected=[c.path.name for c in chosen],
        skipped_samples=state.skipped_samples,
        seconds=time.monotonic() - started,
        first_epoch_samples=state.first_epoch_samples,
        validation=run.data.validation,
        end_reason=stopping.end_reason(run, state),
    )
    if world.is_main:
        write_summary(result)
    return result


def _stopped(run: Run, state: TrainState, last_loss: float | None, signal_name: str, started: float) -> TrainResult:
    """The run was asked to stop: the checkpoint is written; say how to continue."""
    command = faults.resume_command(run.request.command)
    if run.world.is_main:
        latest = ckpt.list_checkpoints(run.request.output_dir)[-1].path
        record = {"signal": signal_name, "step": state.step, "checkpoint": str(latest), "resume": command}
        (run.request.output_dir / STOPPED_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return TrainResult(
        output_dir=run.request.output_dir,
        steps=state.step,
        final_loss=last_loss,
        best_val_cer=None,
        selected=[],
        skipped_samples=state.skipped_samples,
        seconds=time.monotonic() - started,
        stopped_by=signal_name,
        resume_command=command,
        first_epoch_samples=state.first_epoch_samples,
    )


def _loader_generator(seed: int, rank: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed * 1_000_003 + rank)


def _take(iterator: Iterator[Batch], count: int) -> list[Batch]:
    group = []
    for batch in iterator:
        group.append(batch)
        if len(group) == count:
            break
    return group
