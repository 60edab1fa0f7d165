"""Which adapter the next request asks for.

Multi-adapter serving is only as fast as its adapter cache under the traffic it gets, so
the mix matters: ``uniform`` spreads requests evenly over N adapter ids (the cache's worst
case once N exceeds its size); ``zipf`` gives the k-th id (1-based, in the order given)
weight 1/k^s, a few hot adapters and a long tail, which is what real multi-tenant traffic
looks like; ``none`` (or no ids) sends every request to the base model.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from loraland.loadtest.options import AdapterDist


def zipf_weights(n: int, s: float) -> list[float]:
    """Normalised Zipf weights of ranks 1..n with exponent s."""
    if n < 1:
        raise ValueError("zipf needs at least one adapter id")
    if s <= 0:
        raise ValueError(f"zipf exponent must be positive, got {s}")
    raw = [1.0 / (k**s) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


class AdapterMix:
    """Draws adapter ids (None = the base model) from a seeded generator."""

    def __init__(
        self, adapters: Sequence[str], dist: AdapterDist, zipf_s: float, rng: random.Random
    ) -> None:
        self.adapters = tuple(adapters)
        self.dist: AdapterDist = dist if self.adapters else "none"
        self._rng = rng
        self._cumulative: list[float] = []
        if self.dist == "zipf":
            self._cumulative = list(itertools.accumulate(zipf_weights(len(self.adapters), zipf_s)))

    def weights(self) -> list[float]:
        """The probability of each id, in order (empty for the base model only)."""
        if self.dist == "none":
            return []
        if self.dist == "uniform":
            return [1.0 / len(self.adapters)] * len(self.adapters)
        previous = [0.0, *self._cumulative[:-1]]
        return [c - p for c, p in zip(self._cumulative, previous, strict=True)]

    def sample(self) -> str | None:
        if self.dist == "none":
            return None
        if self.dist == "uniform":
            return self._rng.choice(self.adapters)
        # Inverse-CDF draw; the min() guards the last bucket against rounding (sum ~ 1).
        index = bisect.bisect_left(self._cumulative, self._rng.random() * self._cumulative[-1])
        return self.adapters[min(index, len(self.adapters) - 1)]
