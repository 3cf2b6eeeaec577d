"""The optimisation loop shared by the training scripts.

A script builds a :class:`~latentsync.training.run.TrainingRun` and passes two functions:
``compute_loss(run, batch) -> loss`` (a scalar tensor, or ``(loss, {term: tensor})`` to chart
loss terms) and ``validate(run) -> {metric: value}`` (already summed over ranks; ``loss``
shares the loss chart's panel). The loop does the rest, per optimiser step:

1. forward every micro-batch under ``accelerator.accumulate`` (gradient accumulation; autocast
   and the fp16 grad scaler come from the accelerator's mixed precision);
2. a micro-batch whose loss is not finite on any rank gets no backward pass, and its whole step
   is skipped, as is a step whose (unscaled) gradient norm is not finite; skipped steps still
   count (the data and LR schedule move on), are logged, and ``max_nonfinite_in_a_row`` of them
   in a row stop the run;
3. clip the gradient norm, step the optimizer and the LR schedule, log the mean loss over ranks;
4. every ``validation_steps`` (and at the end): validate, chart, keep the best checkpoint;
   every ``save_ckpt_steps`` (and at the end): save weights + training state, prune.

``$LATENTSYNC_KILL_AT_STEP=N`` (for tests of resuming) SIGKILLs every process in the middle of step N,
after its first backward pass: the state a crash or ``kill -9`` leaves, at a step, not at a time.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Callable, Mapping

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from tqdm.auto import tqdm

from latentsync.training.checkpoints import save_best_checkpoint, save_training_state
from latentsync.training.guard import all_ranks_finite
from latentsync.training.run import TrainingRun
from latentsync.utils.files import atomic_output

logger = get_logger(__name__)

KILL_AT_STEP_ENV = "LATENTSYNC_KILL_AT_STEP"

LossFn = Callable[[TrainingRun, Any], "torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor]]"]
ValidateFn = Callable[[TrainingRun], Mapping[str, float]]


def train_loop(run: TrainingRun, compute_loss: LossFn, validate: ValidateFn | None = None) -> None:
    """Optimise until ``settings.max_train_steps`` (or the time limit), validating and checkpointing on schedule."""
    accelerator, settings = run.accelerator, run.settings
    max_steps = settings.max_train_steps
    if run.global_step >= max_steps:
        logger.info("already at step %d of %d: nothing to train", run.global_step, max_steps)
        return
    logger.info(
        "training from step %d to %d: %d processes x %d accumulation; precision %s; device %s",
        run.global_step, max_steps, accelerator.num_processes, accelerator.gradient_accumulation_steps,
        accelerator.mixed_precision, accelerator.device, main_process_only=True,
    )
    progress = tqdm(total=max_steps, initial=run.global_step, desc="Steps", disable=not accelerator.is_main_process)
    try:
        _optimise(run, compute_loss, validate, progress)
    finally:
        progress.close()  # ends the bar's line: an error message after it starts a line of its own


def _optimise(run: TrainingRun, compute_loss: LossFn, validate: ValidateFn | None, progress: tqdm) -> None:
    accelerator, settings = run.accelerator, run.settings
    max_steps = settings.max_train_steps
    deadline = time.monotonic() + 60 * settings.max_train_minutes if settings.max_train_minutes > 0 else None
    trained = [p for p in run.model.parameters() if p.requires_grad]
    run.model.train()
    micro_losses: list[torch.Tensor] = []
    micro_terms: dict[str, list[torch.Tensor]] = {}
    skip_reason: str | None = None
    kill_at = int(os.environ.get(KILL_AT_STEP_ENV) or 0)
    for batch in run.train_loader:
        with accelerator.accumulate(run.model):
            loss, terms = _split(compute_loss(run, batch))
            if all_ranks_finite(accelerator, loss):
                accelerator.backward(loss)
            else:
                skip_reason = skip_reason or "non-finite loss"
            if run.global_step + 1 == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if accelerator.sync_gradients and skip_reason is None:
                norm = accelerator.clip_grad_norm_(trained, settings.max_grad_norm or float("inf"))
                if accelerator.scaler is None and norm is not None and not torch.isfinite(norm):
                    skip_reason = "non-finite gradient"  # with fp16 the grad scaler skips such steps itself
            if skip_reason is None:
                run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        micro_losses.append(loss.detach())
        for name, value in terms.items():
            micro_terms.setdefault(name, []).append(value.detach())
        if run.debug is not None:
            run.debug.note_batch(batch)
        if not accelerator.sync_gradients:
            continue

        run.lr_scheduler.step()
        run.global_step += 1
        progress.update(1)
        if skip_reason is None:
            run.guard.step_done()
            step_loss = _mean_over_ranks(accelerator, micro_losses)
            step_terms = {k: _mean_over_ranks(accelerator, v) for k, v in micro_terms.items()}
            run.history.record_step(run.global_step, step_loss, step_terms)
            accelerator.log({"loss": step_loss, "lr": run.lr_scheduler.get_last_lr()[0], **step_terms}, step=run.global_step)
            progress.set_postfix(loss=f"{step_loss:.4f}")
        else:
            step_loss = float("nan")
            run.guard.step_skipped(run.global_step, skip_reason)
        micro_losses.clear()
        micro_terms.clear()
        skip_reason = None
        if run.debug is not None:
            run.debug.note_step(run.global_step, step_loss, run.model)

        last = run.global_step >= max_steps or out_of_time(accelerator, deadline)
        if last and run.global_step < max_steps:
            logger.info("run.max_train_minutes reached at step %d: stopping", run.global_step, main_process_only=True)
        if validate is not None and (run.global_step % settings.validation_steps == 0 or last):
            record_validation(run, validate(run))
        if run.global_step % settings.save_ckpt_steps == 0 or last:
            save_training_state(run)
        if last:
            break


def record_validation(run: TrainingRun, metrics: Mapping[str, float]) -> None:
    """Log, chart and remember validation ``metrics``; copy the weights when the best metric improves."""
    accelerator = run.accelerator
    run.history.record_validation(run.global_step, metrics)
    accelerator.log({f"val_{name}": value for name, value in metrics.items()}, step=run.global_step)
    shown = ", ".join(f"val {name} {value:.4f}" for name, value in metrics.items())
    logger.info("step %d: %s", run.global_step, shown, main_process_only=True)
    if run.best is not None:
        if run.best.update(run.global_step, metrics):
            path = save_best_checkpoint(run)
            logger.info("best %s so far: saved %s", run.best.metric, path, main_process_only=True)
        else:
            logger.info(
                "val %s has not improved for %d validations (best %.4f at step %d)", run.best.metric,
                run.best.validations_since, run.best.value if run.best.value is not None else float("nan"),
                run.best.step if run.best.step is not None else -1, main_process_only=True,
            )
    if accelerator.is_main_process:
        path = os.path.join(run.output_dir, "loss_charts", "loss_chart.png")
        run.history.save_chart(path, title=os.path.basename(os.path.normpath(run.output_dir)))
        run.note_write(path)


def out_of_time(accelerator: Accelerator, deadline: float | None) -> bool:
    """Whether rank 0's clock passed ``deadline``; every rank gets the same answer, so they stop together."""
    if deadline is None:
        return False
    flag = torch.tensor([float(time.monotonic() > deadline)], device=accelerator.device)
    if accelerator.num_processes > 1:
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def _split(output: Any) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    return output if isinstance(output, tuple) else (output, {})


def _mean_over_ranks(accelerator: Accelerator, values: list[torch.Tensor]) -> float:
    return accelerator.reduce(torch.stack(values).mean(), reduction="mean").item()


# --------------------------------------------------------------------------- debugging aid


class DebugRecorder:
    """What one rank saw and wrote, dumped as ``rank<R>.json`` (tests of distributed runs read it)."""

    def __init__(self, accelerator: Accelerator, dump_dir: str, ids_key: str = "video_index"):
        self.dump_dir, self.ids_key = dump_dir, ids_key
        self.record: dict[str, Any] = {"rank": accelerator.process_index, "world_size": accelerator.num_processes,
                                       "steps": [], "files_written": []}
        self._seen: list[int] = []

    def note_batch(self, batch: Mapping[str, Any]) -> None:
        if self.ids_key in batch:
            self._seen += batch[self.ids_key].tolist()

    def note_step(self, step: int, loss: float, model: torch.nn.Module) -> None:
        self.record["steps"].append({"step": step, "loss": loss, "video_indices": self._seen,
                                     "weights_digest": weights_digest(model)})
        self._seen = []

    def note_write(self, path: str | os.PathLike) -> None:
        self.record["files_written"].append(os.path.abspath(path))

    def dump(self) -> None:
        os.makedirs(self.dump_dir, exist_ok=True)
        with atomic_output(os.path.join(self.dump_dir, f"rank{self.record['rank']}.json")) as tmp, open(tmp, "w") as f:
            json.dump(self.record, f)


def weights_digest(model: torch.nn.Module) -> list[float]:
    """A few numbers that differ when weights differ: per-tensor sums of the first and last parameters plus the total."""
    params = [p.detach().double() for p in model.parameters()]
    return [params[0].sum().item(), params[-1].sum().item(), sum(p.abs().sum() for p in params).item()]
