"""The shared training loop: exact resume, non-finite skips, best checkpoint, pruning, accumulation."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from latentsync.errors import TrainingDivergedError
from latentsync.models.checkpoint import read_checkpoint
from latentsync.training.checkpoints import BEST_CHECKPOINT, checkpoint_steps
from latentsync.training.loop import train_loop
from tests.conftest import reset_accelerate_state as reset_accelerate
from tests.training.conftest import toy_loss, toy_run


def weights(path):
    return read_checkpoint(path)[0]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_is_bit_exact(tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    run = toy_run(unbroken, max_steps=6)
    train_loop(run, toy_loss)
    reference = run.history.train
    reset_accelerate()
    train_loop(toy_run(broken, max_steps=3), toy_loss)  # saves at step 3 (the last step)
    reset_accelerate()
    resumed = toy_run(broken, max_steps=6, resume="latest")
    assert resumed.global_step == 3
    assert resumed.lr_scheduler.get_last_lr() == pytest.approx(
        [1e-2 * 0.5 * (1 + math.cos(math.pi * (3 - 2) / (6 - 2)))]
    )  # the cosine schedule continues after its 2 warmup steps
    train_loop(resumed, toy_loss)
    assert resumed.history.train == reference  # every loss, bit for bit
    assert_same_weights(weights(unbroken / "checkpoints" / "checkpoint-6.pt"), weights(broken / "checkpoints" / "checkpoint-6.pt"))
    assert read_checkpoint(broken / "checkpoints" / "checkpoint-6.pt")[1] == 6


def test_accumulation_steps_once_per_window(tmp_path):
    run = toy_run(tmp_path, max_steps=3, accumulation=2)
    seen = []
    train_loop(run, lambda r, b: seen.append(b["x"].shape[0]) or toy_loss(r, b))
    assert len(seen) == 6  # two micro-batches of 4 per optimiser step
    assert [s for s, _ in run.history.train] == [1, 2, 3]
    assert run.optimizer.state_dict()["state"][0]["step"] == 3


def _nan_on(steps):
    """toy_loss, but NaN on the micro-batches of the given (1-based) optimiser steps."""
    calls = []

    def loss_fn(run, batch):
        calls.append(1)
        loss = toy_loss(run, batch)
        return loss * float("nan") if len(calls) in steps else loss

    return loss_fn


def test_non_finite_loss_skips_the_step(tmp_path, caplog):
    run = toy_run(tmp_path, max_steps=4, save_ckpt_steps=1)
    with caplog.at_level(logging.WARNING):
        train_loop(run, _nan_on({2}))
    folder = tmp_path / "checkpoints"
    assert_same_weights(weights(folder / "checkpoint-1.pt"), weights(folder / "checkpoint-2.pt"))  # no update
    assert not torch.equal(weights(folder / "checkpoint-2.pt")["0.weight"], weights(folder / "checkpoint-3.pt")["0.weight"])
    assert [s for s, _ in run.history.train] == [1, 3, 4]  # the step counts, its loss is not charted
    assert run.optimizer.state_dict()["state"][0]["step"] == 3  # Adam stepped three times
    assert "step 2 skipped: non-finite loss (1 in a row, 1 in all)" in caplog.text
    assert run.guard.in_a_row == 0 and run.guard.total == 1


def test_non_finite_gradient_skips_the_step(tmp_path, caplog):
    def loss_fn(run, batch):
        loss = toy_loss(run, batch)
        if run.global_step == 1:  # finite value (0), NaN gradient: d sqrt(u)/du is infinite at 0
            w = next(run.model.parameters())
            loss = loss + torch.sqrt((w - w.detach()).abs().sum())
        return loss

    run = toy_run(tmp_path, max_steps=3, save_ckpt_steps=1)
    with caplog.at_level(logging.WARNING):
        train_loop(run, loss_fn)
    folder = tmp_path / "checkpoints"
    assert_same_weights(weights(folder / "checkpoint-1.pt"), weights(folder / "checkpoint-2.pt"))
    assert "step 2 skipped: non-finite gradient" in caplog.text
    assert all(torch.isfinite(v).all() for v in weights(folder / "checkpoint-3.pt").values())


def test_too_many_non_finite_steps_in_a_row_stop_the_run(tmp_path):
    run = toy_run(tmp_path, max_steps=10, max_nonfinite_in_a_row=3)
    with pytest.raises(TrainingDivergedError, match=r"3 steps in a row were skipped \(step 7: non-finite loss\)"):
        train_loop(run, _nan_on({2, 3, 5, 6, 7}))  # steps 2-3 are tolerated (step 4 resets the count), 5-7 are not
    assert run.global_step == 7


def test_best_checkpoint_follows_the_validation_metric(tmp_path, caplog):
    scores = iter([0.5, 0.8, 0.6, float("nan")])  # at steps 2, 4, 6, 8
    run = toy_run(tmp_path, max_steps=8, save_ckpt_steps=2, best_metric="accuracy", best_mode="max")
    with caplog.at_level(logging.INFO):
        train_loop(run, toy_loss, lambda r: {"loss": 1.0, "accuracy": next(scores)})
    best, step = read_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert step == 4
    assert_same_weights(best, weights(tmp_path / "checkpoints" / "checkpoint-4.pt"))
    assert (run.best.step, run.best.value, run.best.validations_since) == (4, 0.8, 2)
    assert "val accuracy has not improved for 2 validations (best 0.8000 at step 4)" in caplog.text
    state = torch.load(tmp_path / "checkpoints" / "state-8.pt", weights_only=False)
    assert state["best"]["step"] == 4 and state["history"]["val"][1] == (4, {"loss": 1.0, "accuracy": 0.8})


def test_best_checkpoint_by_a_lower_is_better_metric_survives_resume(tmp_path):
    run = toy_run(tmp_path, max_steps=4, save_ckpt_steps=2, best_metric="loss", best_mode="min")
    losses = iter([0.3, 0.4])
    train_loop(run, toy_loss, lambda r: {"loss": next(losses)})
    reset_accelerate()
    resumed = toy_run(tmp_path, max_steps=6, resume="latest", save_ckpt_steps=2, best_metric="loss", best_mode="min")
    assert (resumed.best.step, resumed.best.value) == (2, 0.3)
    train_loop(resumed, toy_loss, lambda r: {"loss": 0.35})  # better than 0.4, not than 0.3
    assert read_checkpoint(tmp_path / BEST_CHECKPOINT)[1] == 2


def test_prune_keeps_the_newest_pairs_and_the_best(tmp_path):
    run = toy_run(tmp_path, max_steps=8, save_ckpt_steps=2, keep_last_n=2, best_metric="accuracy")
    scores = iter([0.9, 0.1, 0.1, 0.1])
    train_loop(run, toy_loss, lambda r: {"accuracy": next(scores)})
    assert sorted(checkpoint_steps(str(tmp_path))) == [6, 8]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint-6.pt", "checkpoint-8.pt", "state-6.pt", "state-8.pt"
    ]
    assert read_checkpoint(tmp_path / BEST_CHECKPOINT)[1] == 2  # older than every kept pair, still there
    assert (tmp_path / "loss_charts" / "loss_chart.png").stat().st_size > 1000


def test_history_reads_states_of_the_pre_toolkit_syncnet_trainer():
    from latentsync.training.history import History

    old = {"train": [(1, 0.7), (2, 0.6)], "val": [(2, 0.65, 0.5)]}
    history = History.from_state_dict(old)
    assert history.train == [(1, 0.7), (2, 0.6)]
    assert history.val == [(2, {"loss": 0.65, "accuracy": 0.5})]
    assert History.from_state_dict(history.state_dict()) == history
