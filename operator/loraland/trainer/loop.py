"""The training loop: plain PyTorch, so every step is visible and resumable.

Per optimizer step: the step's micro-batches (from :class:`.schedule.DataOrder`) are
padded, run forward, and the summed token losses are divided by the number of loss
tokens of the *whole* step, so gradient accumulation gives the same gradient as one big
batch. Then clipping, the optimizer and the scheduler step; a progress line every
``log_every`` steps and a checkpoint every ``checkpoint_every`` steps and at the end.
Asked to stop (``should_stop``, see :mod:`.stopping`), it checkpoints the step it just
finished and raises :class:`.stopping.Terminated`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from loraland.api.progress import TrainingProgress
from loraland.trainer.encoding import IGNORE_INDEX, Encoded
from loraland.trainer.schedule import DataOrder
from loraland.trainer.stopping import Terminated


@dataclass(frozen=True)
class LoopConfig:
    total_steps: int
    max_grad_norm: float
    log_every: int
    checkpoint_every: int
    pad_id: int
    device: str
    autocast_dtype: torch.dtype | None = None


@dataclass
class LoopStats:
    steps: int
    last_loss: float | None
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch; padded positions are masked and carry no label."""
    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over labelled positions.

    The labels move one position left (the last position gets no label) rather than the
    logits one position right: slicing the logits would copy the largest tensor of the step.
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return F.cross_entropy(
        logits.float().view(-1, logits.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    encoded: Sequence[Encoded],
    order: DataOrder,
    config: LoopConfig,
    *,
    start_step: int,
    emit: Callable[[TrainingProgress], None],
    checkpoint: Callable[[int, float | None], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> LoopStats:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext
    if config.autocast_dtype is not None:
        device_type = "cuda" if config.device.startswith("cuda") else "cpu"
        dtype = config.autocast_dtype
        autocast = lambda: torch.autocast(device_type=device_type, dtype=dtype)  # noqa: E731
    stats = LoopStats(steps=start_step, last_loss=None, tokens=0, seconds=0.0)
    if start_step:
        # Status shows the resume at once, also when the checkpoint was the last step.
        emit(
            TrainingProgress(
                phase="training",
                step=start_step,
                total_steps=config.total_steps,
                epoch=round(order.epoch_after(start_step), 4),
                resumed_from_step=start_step,
            )
        )
    window_tokens, window_started = 0, time.perf_counter()
    run_started = window_started
    for step in range(start_step, config.total_steps):
        batches = [[encoded[i] for i in ids] for ids in order.step_batches(step)]
        loss_tokens = max(1, sum(item.loss_tokens for batch in batches for item in batch))
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for items in batches:
            batch = {k: v.to(config.device) for k, v in collate(items, config.pad_id).items()}
            with autocast():
                logits = model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits
            loss = token_loss_sum(logits, batch["labels"])
            (loss / loss_tokens).backward()  # type: ignore[no-untyped-call]
            loss_total += float(loss.detach())
            window_tokens += int(batch["attention_mask"].sum())
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        done = step + 1
        stats.steps, stats.last_loss = done, loss_total / loss_tokens
        if done % config.log_every == 0 or done == config.total_steps:
            now = time.perf_counter()
            elapsed = now - window_started
            stats.tokens += window_tokens
            stats.seconds += elapsed
            per_step = (now - run_started) / (done - start_step)
            emit(
                TrainingProgress(
                    phase="training",
                    step=done,
                    total_steps=config.total_steps,
                    epoch=round(order.epoch_after(done), 4),
                    loss=round(stats.last_loss, 6),
                    learning_rate=float(scheduler.get_last_lr()[0]),
                    tokens_per_second=round(window_tokens / elapsed, 2) if elapsed > 0 else None,
                    eta_seconds=round(per_step * (config.total_steps - done), 1),
                    resumed_from_step=start_step or None,
                )
            )
            window_tokens, window_started = 0, time.perf_counter()
        stopping = should_stop()
        if config.checkpoint_every and (
            stopping or done % config.checkpoint_every == 0 or done == config.total_steps
        ):
            checkpoint(done, stats.last_loss)
            window_started = time.perf_counter()  # checkpoint time is not training throughput
        if stopping:
            resume = (
                f"checkpoint saved, running the job again resumes at step {done}"
                if config.checkpoint_every
                else "checkpoints are off, running the job again starts over"
            )
            raise Terminated(
                f"stopped by SIGTERM after step {done} of {config.total_steps}; {resume}"
            )
    return stats
