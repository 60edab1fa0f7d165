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
from loraland.serving.lora.ops import batched_lora_delta, slot_layout


@dataclass
class LoraContext:
    """Per-forward state shared by every wrapper (set by :meth:`LoraSlotBank.set_rows`)."""

    #: Rows that use an adapter, when only some do (the others skip the LoRA math).
    rows: torch.Tensor | None = None
    #: The distinct slots in use, ``[k]``; None when no row uses an adapter.
    active: torch.Tensor | None = None
    #: Slot of each adapter row, ``[n]``, and its one-hot position in ``active``, ``[n, k]``.
    row_slots: torch.Tensor | None = None
    onehot: torch.Tensor | None = None
    #: Largest rank among the slots in use: the slot tensors are sliced to it.
    rank: int = 0
    #: ``row_slots`` / ``onehot`` repeated per token, by tokens per row (prefill).
    per_token: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def expanded(self, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.row_slots is not None and self.onehot is not None
        if tokens == 1:
            return self.row_slots, self.onehot
        if tokens not in self.per_token:
            self.per_token[tokens] = (
                self.row_slots.repeat_interleave(tokens, 0),
                self.onehot.repeat_interleave(tokens, 0),
            )
        return self.per_token[tokens]


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
        if ctx.active is None or ctx.rank == 0:
            return y
        if x.dim() != 3:
            raise ValueError(
                f"expected [batch, tokens, features] input, got shape {tuple(x.shape)}"
            )
        rows = x if ctx.rows is None else x.index_select(0, ctx.rows)
        n, tokens, _ = rows.shape
        row_slots, onehot = ctx.expanded(tokens)
        delta = batched_lora_delta(
            rows.reshape(n * tokens, self.in_features),
            self.lora_a[:, : ctx.rank],
            self.lora_b[:, :, : ctx.rank],
            self.scale,
            ctx.active,
            onehot,
            row_slots,
        ).view(n, tokens, self.out_features)
        if ctx.rows is None:
            return y + delta
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
        ctx.per_token = {}
        used = [s for s in slots if s]
        if not used:
            ctx.rows, ctx.active, ctx.row_slots, ctx.onehot, ctx.rank = None, None, None, None, 0
            return
        device, dtype = self._device_dtype()
        ctx.row_slots = torch.tensor(used, dtype=torch.long, device=device)
        ctx.active, ctx.onehot = slot_layout(ctx.row_slots, dtype)
        ctx.rank = max(self.ranks[s] for s in set(used))
        if len(used) == len(slots):
            ctx.rows = None
        else:
            ctx.rows = torch.tensor(
                [i for i, s in enumerate(slots) if s], dtype=torch.long, device=device
            )

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        param = next(self.model.parameters())
        return param.device, param.dtype

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
