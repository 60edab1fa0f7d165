"""A left-padded KV cache the engine can grow, merge and filter between steps.

Why left padding (TGI's original CausalLM batch) rather than per-row caches: every row
keeps exactly the keys and values it would have alone (computed at its own positions,
which the engine passes as ``position_ids``); padded positions are masked out by the
attention mask, and in fp32 a masked key contributes exactly zero after the softmax.
So a row's attention over its own tokens is the one transformers computes for it alone,
which is what lets greedy output match transformers + peft token for token, while the
transformers model still runs the whole batch in one forward.

Each layer's keys/values live in a preallocated buffer ``[rows, kv_heads, capacity,
head_dim]``; ``update`` writes the new positions in place and hands attention a view,
instead of concatenating (and copying) the whole cache every step as DynamicCache does.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

#: Spare positions allocated beyond what is needed, so most steps write in place.
_HEADROOM = 64


class SlabLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's cache: buffer plus the filled length (all rows share it)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.buf_k = keys
        self.buf_v = values
        self.length = length
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        self.keys = self.buf_k[:, :, : self.length]
        self.values = self.buf_v[:, :, : self.length]

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
            capacity = needed + max(_HEADROOM, needed // 2)
            self.buf_k = _regrow(self.buf_k, self.length, capacity)
            self.buf_v = _regrow(self.buf_v, self.length, capacity)
        self.buf_k[:, :, self.length : needed] = key_states
        self.buf_v[:, :, self.length : needed] = value_states
        self.length = needed
        self._expose()
        return self.buf_k[:, :, :needed], self.buf_v[:, :, :needed]

    def get_seq_length(self) -> int:
        return self.length


def _regrow(buf: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    rows, heads, _, dim = buf.shape
    fresh = buf.new_zeros(rows, heads, capacity, dim)
    fresh[:, :, :length] = buf[:, :, :length]
    return fresh


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

    def select(self, rows: torch.Tensor, drop_front: int) -> SlabCache:
        """Keep ``rows``, dropping the first ``drop_front`` positions (padding of all of them)."""
        length = self.length - drop_front
        layers = []
        for layer in self.slabs:
            k = layer.buf_k.index_select(0, rows)[:, :, drop_front : self.length]
            v = layer.buf_v.index_select(0, rows)[:, :, drop_front : self.length]
            layers.append(SlabLayer(_with_room(k, length), _with_room(v, length), length))
        return SlabCache(layers)

    @staticmethod
    def merge(first: SlabCache, second: SlabCache) -> SlabCache:
        """Stack two batches' caches, left-padding the shorter to the longer."""
        length = max(first.length, second.length)
        layers = []
        for a, b in zip(first.slabs, second.slabs, strict=True):
            k = _stack(a.buf_k, a.length, b.buf_k, b.length, length)
            v = _stack(a.buf_v, a.length, b.buf_v, b.length, length)
            layers.append(SlabLayer(k, v, length))
        return SlabCache(layers)


def _with_room(filled: torch.Tensor, length: int) -> torch.Tensor:
    rows, heads, _, dim = filled.shape
    buf = filled.new_zeros(rows, heads, length + _HEADROOM, dim)
    buf[:, :, :length] = filled
    return buf


def _stack(a: torch.Tensor, a_len: int, b: torch.Tensor, b_len: int, length: int) -> torch.Tensor:
    rows_a, heads, _, dim = a.shape
    rows_b = b.shape[0]
    buf = a.new_zeros(rows_a + rows_b, heads, length + _HEADROOM, dim)
    buf[:rows_a, :, length - a_len : length] = a[:, :, :a_len]
    buf[rows_a:, :, length - b_len : length] = b[:, :, :b_len]
    return buf
