"""A slot-based KV cache: rows live in a preallocated slab, addressed by index.

Why one shared time axis with padding (TGI's original CausalLM batch) rather than per-row
caches: every row keeps exactly the keys and values it would have alone (computed at its
own positions, which the engine passes as ``position_ids``); positions a row does not
use are masked out by the attention mask, and in fp32 a masked key contributes exactly
zero after the softmax. So a row's attention over its own tokens is the one transformers
computes for it alone, which is what lets greedy output match transformers + peft token
for token, while the transformers model still runs the whole batch in one forward.

Each layer's keys/values live in a buffer ``[row capacity, kv_heads, capacity,
head_dim]`` whose first ``rows`` rows are the batch, in order; attention gets a view.
Nothing copies the whole batch on the hot paths:

- a decode step writes one position in place (capacity grows geometrically, so a long
  generation reallocates O(log n) times);
- finishing rows moves the last rows into their places: one row copy per finished row
  that had rows after it (:meth:`SlabCache.remove`);
- merging new rows copies only them, right-aligned to the batch's length; a prompt
  longer than the batch moves the shared length forward and leaves the running rows a
  masked gap, rather than shifting every row right (:meth:`SlabCache.append`).

Padding every row has at the front is dropped only once it is a quarter of the length
(:meth:`SlabCache.drop_front`, a whole-batch copy amortised over the steps that made it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

#: Spare positions allocated beyond what is needed, so most steps write in place.
_HEADROOM = 64


class SlabLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's cache: the slab, the rows in use and the filled length (all rows
    share it)."""

    def __init__(
        self, keys: torch.Tensor, values: torch.Tensor, length: int, rows: int | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.buf_k = keys
        self.buf_v = values
        self.length = length
        self.rows = keys.shape[0] if rows is None else rows
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self.buf_k[: self.rows, :, : self.length]
        self.values = self.buf_v[: self.rows, :, : self.length]

    def reallocate(self, row_capacity: int, capacity: int, drop_front: int = 0) -> None:
        """New buffers holding the rows in use, without their first ``drop_front``
        positions: the one copy of the whole batch, on growth or compaction only."""
        live = self.length - drop_front
        for name in ("buf_k", "buf_v"):
            old: torch.Tensor = getattr(self, name)
            _, heads, _, dim = old.shape
            fresh = old.new_zeros(row_capacity, heads, capacity, dim)
            fresh[: self.rows, :, :live] = old[: self.rows, :, drop_front : self.length]
            setattr(self, name, fresh)
        self.length = live
        self._expose()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        return None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        added = key_states.shape[-2]
        needed = self.length + added
        if needed > self.buf_k.shape[2]:
            # Grow geometrically (at least double the headroom, or half the length), so
            # a long generation copies its cache O(log n) times, not every 64 tokens.
            self.reallocate(self.buf_k.shape[0], _room(needed))
        self.buf_k[: self.rows, :, self.length : needed] = key_states
        self.buf_v[: self.rows, :, self.length : needed] = value_states
        self.length = needed
        self._expose()
        return self.buf_k[: self.rows, :, :needed], self.buf_v[: self.rows, :, :needed]

    def get_seq_length(self) -> int:
        return self.length


def _room(length: int) -> int:
    """Capacity for ``length`` positions and the steps after: geometric headroom."""
    return length + max(_HEADROOM, length // 2)


class SlabCache(Cache):
    """The transformers Cache the model sees: one :class:`SlabLayer` per decoder layer."""

    def __init__(self, layers: list[SlabLayer]) -> None:
        super().__init__(layers=list(layers))
        self.slabs = layers

    @classmethod
    def empty(
        cls,
        num_layers: int,
        rows: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> SlabCache:
        def buffer() -> torch.Tensor:
            return torch.zeros(rows, kv_heads, capacity, head_dim, dtype=dtype, device=device)

        return cls([SlabLayer(buffer(), buffer(), 0) for _ in range(num_layers)])

    @property
    def length(self) -> int:
        return self.slabs[0].length if self.slabs else 0

    @property
    def rows(self) -> int:
        return self.slabs[0].rows if self.slabs else 0

    @torch.inference_mode()
    def remove(self, dropped: Sequence[int]) -> list[int]:
        """Drop rows ``dropped`` in place; kept rows past the new end move into the holes.

        Returns the new order: for each new row, its old index. Only the moved rows are
        copied (none when the dropped rows were the last ones).
        """
        n = self.rows
        gone = set(dropped)
        m = n - len(gone)
        holes = sorted(i for i in gone if i < m)
        movers = [i for i in range(m, n) if i not in gone]
        order = list(range(m))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        if holes:
            device = self.slabs[0].buf_k.device
            dst = torch.tensor(holes, dtype=torch.long, device=device)
            src = torch.tensor(movers, dtype=torch.long, device=device)
            for layer in self.slabs:
                for buf in (layer.buf_k, layer.buf_v):
                    buf[dst, :, : layer.length] = buf[src, :, : layer.length]
        for layer in self.slabs:
            layer.rows = m
            layer._expose()
        return order

    @torch.inference_mode()
    def drop_front(self, positions: int) -> None:
        """Drop the first ``positions`` (padding in every row): a whole-batch copy."""
        for layer in self.slabs:
            live = layer.length - positions
            layer.reallocate(layer.buf_k.shape[0], _room(live), drop_front=positions)

    @torch.inference_mode()
    def append(self, other: SlabCache) -> None:
        """Add ``other``'s rows after these, copying only them.

        The shared length becomes the longer of the two: ``other``'s rows are
        right-aligned to it (zeros before), and if ``other`` is longer the rows already
        here get a zeroed, masked gap up to it instead of being shifted.
        """
        n, k = self.rows, other.rows
        old, theirs = self.length, other.length
        length = max(old, theirs)
        for mine, new in zip(self.slabs, other.slabs, strict=True):
            row_capacity, capacity = mine.buf_k.shape[0], mine.buf_k.shape[2]
            if n + k > row_capacity or length > capacity:
                rows_needed = n + k
                if rows_needed > row_capacity:
                    row_capacity = max(2 * row_capacity, rows_needed)
                mine.reallocate(row_capacity, max(capacity, _room(length)))
            for buf, src in ((mine.buf_k, new.buf_k), (mine.buf_v, new.buf_v)):
                if theirs > old:
                    buf[:n, :, old:theirs] = 0
                buf[n : n + k, :, : length - theirs] = 0
                buf[n : n + k, :, length - theirs : length] = src[:k, :, :theirs]
            mine.rows = n + k
            mine.length = length
            mine._expose()
