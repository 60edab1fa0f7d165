"""How many optimizer steps a job takes, and which examples each step sees.

The examples form an endless stream of epochs, each a permutation seeded by (seed,
epoch). Optimizer step ``k`` consumes stream positions ``[k*B*A, (k+1)*B*A)`` for batch
size B and accumulation A. So the examples of any step follow from the step number
alone, and a run resumed at step k sees exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import math
import random

from loraland.api.finetunejob import TrainingSpec


def total_steps(training: TrainingSpec, examples: int) -> int:
    if training.max_steps is not None:
        return training.max_steps
    per_step = training.batch_size * training.gradient_accumulation_steps
    return max(1, math.ceil((training.epochs or 1.0) * examples / per_step))


def warmup_steps(training: TrainingSpec, steps: int) -> int:
    return math.ceil(training.warmup_ratio * steps)


class DataOrder:
    def __init__(self, examples: int, batch_size: int, accumulation: int, seed: int) -> None:
        if examples < 1:
            raise ValueError("no examples to order")
        self.examples = examples
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.seed = seed
        self._permutations: dict[int, list[int]] = {}

    def _permutation(self, epoch: int) -> list[int]:
        order = self._permutations.get(epoch)
        if order is None:
            if len(self._permutations) >= 2:  # a step spans at most two epochs
                self._permutations.clear()
            order = random.Random(f"{self.seed}:{epoch}").sample(
                range(self.examples), self.examples
            )
            self._permutations[epoch] = order
        return order

    def index(self, position: int) -> int:
        return self._permutation(position // self.examples)[position % self.examples]

    def step_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of optimizer step ``step`` (0-based)."""
        start = step * self.batch_size * self.accumulation
        return [
            [self.index(start + m * self.batch_size + i) for i in range(self.batch_size)]
            for m in range(self.accumulation)
        ]

    def epoch_after(self, steps: int) -> float:
        return steps * self.batch_size * self.accumulation / self.examples
