"""Wrapping a base model's Linear modules so each batch row gets its own LoRA delta.

:class:`BatchedLoraLinear` replaces a target ``nn.Linear`` (``q_proj``, ``v_proj``...) and
computes ``base(x) + delta`` with :func:`~loraland.serving.lora.ops.batched_lora_delta`.
All wrappers share one :class:`LoraContext`, which the engine sets before each forward
with the per-row slot indices, so the transformers model itself is untouched: its
attention, KV cache and masks work as they always do.

:class:`LoraSlotBank` owns the wrappers and the slot tensors. Modules are wrapped the
first time an adapter targets them; slot tensors grow to the largest rank loaded so far
(at most ``max_rank``). Only the engine thread calls it, between forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from loraland.serving.lora.loading import LoadedAdapter
from loraland.serving.lora.ops import batched_lora_delta


@dataclass
class LoraContext:
    """Per-forward state shared by every wrapper."""

    #: Slot of each row, ``[n]``; None when no row uses an adapter (wrappers do nothing).
    slots: torch.Tensor | None = None
    #: Rows that use an adapter, when only some do (the others skip the LoRA math).
    rows: torch.Tensor | None = None
    #: Largest rank among the slots in use: the slot tensors are sliced to it.
    rank: int = 0


class BatchedLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, context: LoraContext, num_slots: int) -> None:
        super().__init__()
        self.base = base
        self.context = context
        self.in_features = base.in_features
        self.out_features = base.out_features
        weight = base.weight
        self.lora_a = weight.new_zeros(num_slots, 0, base.in_features)
        self.lora_b = weight.new_zeros(num_slots, base.out_features, 0)
        self.scale = weight.new_zeros(num_slots)

    def grow(self, rank: int) -> None:
        have = self.lora_a.shape[1]
        if rank <= have:
            return
        slots = self.lora_a.shape[0]
        a = self.lora_a.new_zeros(slots, rank, self.in_features)
        b = self.lora_b.new_zeros(slots, self.out_features, rank)
        a[:, :have] = self.lora_a
        b[:, :, :have] = self.lora_b
        self.lora_a, self.lora_b = a, b

    def write(
        self, slot: int, a: torch.Tensor | None, b: torch.Tensor | None, scale: float
    ) -> None:
        self.lora_a[slot].zero_()
        self.lora_b[slot].zero_()
        self.scale[slot] = 0.0
        if a is None or b is None:
            return
        rank = a.shape[0]
        self.lora_a[slot, :rank] = a
        self.lora_b[slot, :, :rank] = b
        self.scale[slot] = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        ctx = self.context
        if ctx.slots is None or ctx.rank == 0:
            return y
        if x.dim() != 3:
            raise ValueError(
                f"expected [batch, tokens, features] input, got shape {tuple(x.shape)}"
            )
        a = self.lora_a[:, : ctx.rank]
        b = self.lora_b[:, :, : ctx.rank]
        if ctx.rows is None:
            return y + batched_lora_delta(x, a, b, self.scale, ctx.slots)
        delta = batched_lora_delta(x.index_select(0, ctx.rows), a, b, self.scale, ctx.slots)
        return y.index_add(0, ctx.rows, delta)


@dataclass
class LoraSlotBank:
    """Device slots of one model: slot 0 is "no adapter", 1..slots hold adapters."""

    model: nn.Module
    slots: int
    context: LoraContext = field(default_factory=LoraContext)
    wrappers: dict[str, BatchedLoraLinear] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ranks = [0] * (self.slots + 1)

    def write(self, slot: int, adapter: LoadedAdapter) -> None:
        """Copy ``adapter`` into ``slot`` of every wrapper (zeros where it has no weights)."""
        if not 1 <= slot <= self.slots:
            raise ValueError(f"slot {slot} out of range 1..{self.slots}")
        for module in adapter.weights:
            self._wrap(module)
        for name, wrapper in self.wrappers.items():
            weights = adapter.weights.get(name)
            if weights is None:
                wrapper.write(slot, None, None, 0.0)
                continue
            wrapper.grow(weights.rank)
            wrapper.write(slot, weights.a, weights.b, weights.scale)
        self.ranks[slot] = adapter.max_rank

    def set_rows(self, slots: list[int]) -> None:
        """Set the per-row slots for the next forward(s)."""
        ctx = self.context
        used = [s for s in slots if s]
        if not used:
            ctx.slots, ctx.rows, ctx.rank = None, None, 0
            return
        device = self._device()
        ctx.slots = torch.tensor(slots, dtype=torch.long, device=device)
        ctx.rank = max(self.ranks[s] for s in used)
        if len(used) == len(slots):
            ctx.rows = None
        else:
            ctx.rows = torch.tensor(
                [i for i, s in enumerate(slots) if s], dtype=torch.long, device=device
            )
            ctx.slots = ctx.slots.index_select(0, ctx.rows)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _wrap(self, name: str) -> None:
        if name in self.wrappers:
            return
        parent_name, _, child = name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        base = getattr(parent, child)
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{name} is {type(base).__name__}, not nn.Linear")
        wrapper = BatchedLoraLinear(base, self.context, self.slots + 1)
        setattr(parent, child, wrapper)
        self.wrappers[name] = wrapper
