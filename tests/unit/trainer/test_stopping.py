"""SIGTERM stops a run where stopping loses nothing (see loraland.trainer.stopping)."""

from __future__ import annotations

import signal
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from loraland.api.progress import TrainingProgress
from loraland.trainer.encoding import Encoded
from loraland.trainer.loop import LoopConfig, train_loop
from loraland.trainer.schedule import DataOrder
from loraland.trainer.stopping import (
    TERMINATED_EXIT_CODE,
    StopSignal,
    Terminated,
    stop_on_sigterm,
)


def test_sigterm_outside_a_deferred_block_stops_at_once() -> None:
    with stop_on_sigterm() as stop, pytest.raises(Terminated):
        signal.raise_signal(signal.SIGTERM)
        pytest.fail("the handler did not raise")
    assert stop.requested
    assert TERMINATED_EXIT_CODE == 143


def test_sigterm_inside_a_deferred_block_is_polled_then_raised_on_leaving() -> None:
    polls: list[bool] = []
    with stop_on_sigterm() as stop, pytest.raises(Terminated):
        with stop.deferred() as should_stop:
            polls.append(should_stop())
            signal.raise_signal(signal.SIGTERM)
            polls.append(should_stop())
        pytest.fail("leaving the block with a stop requested did not raise")
    assert polls == [False, True]


def test_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_sigterm() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop.handle
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_requested_before_the_block_raises_on_entering() -> None:
    stop = StopSignal()
    stop.requested = True
    with pytest.raises(Terminated), stop.deferred():
        pytest.fail("entered")


class TinyLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 8)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return SimpleNamespace(logits=self.head(self.embed(input_ids)))


def _run_until_stopped(
    stop_after: int, checkpoint_every: int
) -> tuple[list[tuple[int, float | None]], Terminated]:
    model = TinyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    encoded = [Encoded([1, 2, 3, 4], [-100, 2, 3, 4], False) for _ in range(6)]
    config = LoopConfig(
        total_steps=10,
        max_grad_norm=1.0,
        log_every=1,
        checkpoint_every=checkpoint_every,
        pad_id=0,
        device="cpu",
    )
    emitted: list[TrainingProgress] = []
    saved: list[tuple[int, float | None]] = []
    with pytest.raises(Terminated) as stopped:
        train_loop(
            model,
            optimizer,
            scheduler,
            encoded,
            DataOrder(len(encoded), 2, 1, seed=0),
            config,
            start_step=0,
            emit=emitted.append,
            checkpoint=lambda step, loss: saved.append((step, loss)),
            should_stop=lambda: len(emitted) >= stop_after,
        )
    assert [p.step for p in emitted] == list(range(1, stop_after + 1))
    return saved, stopped.value


def test_the_loop_checkpoints_the_step_it_stopped_after() -> None:
    saved, stopped = _run_until_stopped(stop_after=3, checkpoint_every=2)
    assert [step for step, _ in saved] == [2, 3]  # the regular one, then the stop's
    assert saved[-1][1] is not None
    assert "after step 3 of 10" in str(stopped) and "resumes at step 3" in str(stopped)


def test_with_checkpoints_off_the_loop_stops_without_one() -> None:
    saved, stopped = _run_until_stopped(stop_after=2, checkpoint_every=0)
    assert saved == []
    assert "starts over" in str(stopped)
