"""Wrapping a base model's Linear modules so each batch row gets its own LoRA delta.

:class:`BatchedLoraLinear` replaces a target ``nn.Linear`` (``q_proj``, ``v_proj``...) and
computes ``base(x) + delta`` with the rank-row ops of :mod:`loraland.serving.lora.ops`.
All wrappers share one :class:`LoraContext`, which the engine sets before each forward
with the per-row adapters, so the transformers model itself is untouched: its attention,
KV cache and masks work as they always do.

:class:`LoraSlotBank` owns the wrappers and the rank-row pools. An adapter of rank ``r``
in slot ``s`` owns ``r`` rows of every wrapper's pool (zero rows where it does not
target that module, or has a smaller rank there), wherever free rows are: there is no
padding to a common rank and no fragmentation (S-LoRA's unified paging, with one page
per rank). Pools grow by doubling up to ``max_rows`` (a hard cap, in rank rows) and,
growing, never past what ``max_bytes`` holds over the wrapped modules (the memory budget,
which the registry keeps by charging each adapter for its own modules: see
:func:`adapter_device_bytes`). Modules are wrapped the first time an adapter targets
them. Only the engine thread writes weights and sets rows; :meth:`LoraSlotBank.free`
may come from any thread.

Per decode step :meth:`LoraSlotBank.set_rows` picks the cheaper form from a cost model
(see :data:`SEGMENT_COST`): the stacked GEMMs while few adapters share the batch, the
segmented gather once many do. Prefill uses the padded gather (``bmm`` per row).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from loraland.serving.lora.loading import LoadedAdapter
from loraland.serving.lora.ops import (
    padded_gather_lora_delta,
    segmented_lora_delta,
    stacked_rows_lora_delta,
)

#: Cost of one rank row in the segmented decode form, relative to one (row, rank-row)
#: entry of the stacked form's dense GEMM. The segmented form gathers ``R`` rank rows
#: and does elementwise products over them; the stacked form does ``rows x K`` work in
#: two GEMMs. ``benchmarks/serving/lora_ops.py`` measures both: on CPU (1 thread,
#: 576-wide layers, 32 rows) the segmented form costs about as much as a stacked GEMM
#: 6-10x its size, so the break-even is near 8 adapters of equal rank in a 32-row batch.
SEGMENT_COST = 8.0

_MIN_ROWS = 256


@dataclass(frozen=True)
class RowBytes:
    """What one rank row costs in a model's Linears (``lm_head`` excluded)."""

    #: On every Linear of the decoder: the most an adapter can cost per rank.
    every_linear: int
    #: On its cheapest single Linear: the least an adapter can cost (rank 1, one module).
    cheapest: int


def adapter_device_bytes(adapter: LoadedAdapter) -> int:
    """The device-tier charge of ``adapter``: its rank rows in the modules it targets.

    Rows are allocated at the adapter's largest rank in each module it targets, so a
    rank-8 adapter on q/k/v/o costs 8 rows of those four, not of the MLP as well (2.65x
    less on the embedded SmolLM2-135M). The pools are row-unified, so when adapters of one
    server target different modules each also holds zero rows in the others' modules,
    which this does not charge; :class:`LoraSlotBank` then outgrows ``max_bytes`` rather
    than refuse an adapter the registry admitted.
    """
    rank = adapter.max_rank
    return sum(
        rank * (w.a.shape[1] + w.b.shape[0]) * w.a.element_size() for w in adapter.weights.values()
    )


@dataclass
class _Step:
    """Index tensors of one batch composition (reused while the composition holds)."""

    #: Rank rows of every batch row, its owner row, and each row's first rank row.
    row_ids: torch.Tensor
    owner: torch.Tensor
    offsets: torch.Tensor
    first_row: torch.Tensor
    #: Stacked form: rank rows of the distinct adapters, and which columns each row uses.
    active_rows: torch.Tensor
    member: torch.Tensor
    #: Prefill: each row's rank rows padded with row 0 to the batch's largest rank.
    row_matrix: torch.Tensor
    stacked: bool


@dataclass
class LoraContext:
    """Per-forward state shared by every wrapper (set by :meth:`LoraSlotBank.set_rows`)."""

    step: _Step | None = None
    #: Tokens per row of the next forward: 1 means decode.
    decode: bool = True
    #: Last composition, so a decode step over the same rows rebuilds nothing.
    key: tuple[tuple[int, ...], bool] | None = None


class BatchedLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, context: LoraContext, rows: int) -> None:
        super().__init__()
        self.base = base
        self.context = context
        self.in_features = base.in_features
        self.out_features = base.out_features
        weight = base.weight
        self.a_rows = weight.new_zeros(rows, base.in_features)
        self.b_rows = weight.new_zeros(rows, base.out_features)
        self.scale_rows = weight.new_zeros(rows)

    def grow(self, rows: int) -> None:
        have = self.a_rows.shape[0]
        if rows <= have:
            return
        for name in ("a_rows", "b_rows", "scale_rows"):
            old = getattr(self, name)
            new = old.new_zeros(rows, *old.shape[1:])
            new[:have] = old
            setattr(self, name, new)

    def write(
        self, ids: torch.Tensor, a: torch.Tensor | None, b: torch.Tensor | None, scale: float
    ) -> None:
        """Fill rank rows ``ids`` (the adapter's, all of them) with ``a``/``b`` (or zeros).

        Rows a previous owner left behind are overwritten or zeroed, never read: only
        the rows past this module's own rank are zero-filled (this runs on the engine
        thread for every wrapper whenever an adapter enters the device tier)."""
        rank = 0 if a is None or b is None else a.shape[0]
        if rank < ids.shape[0]:
            rest = ids[rank:]
            self.a_rows.index_fill_(0, rest, 0.0)
            self.b_rows.index_fill_(0, rest, 0.0)
        self.scale_rows.index_fill_(0, ids, scale if rank else 0.0)
        if a is None or b is None:
            return
        own = ids[:rank]
        self.a_rows.index_copy_(0, own, a.to(self.a_rows.device, non_blocking=True))
        self.b_rows.index_copy_(0, own, b.T.to(self.b_rows.device, non_blocking=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        step = self.context.step
        if step is None:
            return y
        if x.dim() != 3:
            raise ValueError(
                f"expected [batch, tokens, features] input, got shape {tuple(x.shape)}"
            )
        n, tokens, _ = x.shape
        if tokens == 1 and self.context.decode:
            flat = x.view(n, self.in_features)
            if step.stacked:
                delta = stacked_rows_lora_delta(
                    flat,
                    self.a_rows,
                    self.b_rows,
                    self.scale_rows,
                    step.active_rows,
                    step.member,
                    step.first_row,
                )
            else:
                delta = segmented_lora_delta(
                    flat,
                    self.a_rows,
                    self.b_rows,
                    self.scale_rows,
                    step.row_ids,
                    step.owner,
                    step.offsets,
                    step.first_row,
                )
            return y + delta.view(n, 1, self.out_features)
        delta = padded_gather_lora_delta(
            x, self.a_rows, self.b_rows, self.scale_rows, step.row_matrix
        )
        return y + delta


def choose_stacked(rows: int, distinct_rank_sum: int, rank_sum: int) -> bool:
    """The cost model: stacked does ``rows x K`` work, segmented ``SEGMENT_COST x R``."""
    return rows * distinct_rank_sum <= SEGMENT_COST * rank_sum


@dataclass
class LoraSlotBank:
    """Adapter slots of one model: slot 0 is "no adapter", 1..slots hold adapters.

    ``max_rows`` caps the rank rows all resident adapters hold together (None: grow as
    needed); ``max_bytes`` caps growth by memory over the wrapped modules. The registry
    keeps within the budget by evicting.
    """

    model: nn.Module
    slots: int
    max_rows: int | None = None
    max_bytes: int | None = None
    context: LoraContext = field(default_factory=LoraContext)
    wrappers: dict[str, BatchedLoraLinear] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ranks = [0] * (self.slots + 1)
        self._rows_of: dict[int, list[int]] = {}
        self._capacity = 1  # row 0: the zero row every padding points at
        self._free_rows: list[int] = []
        self._lock = threading.Lock()

    # -- memory ---------------------------------------------------------------------------

    @staticmethod
    def row_bytes(model: nn.Module) -> RowBytes:
        """Bytes of one rank row on every Linear of the decoder, and on the cheapest one."""
        sizes = [
            (module.in_features + module.out_features) * module.weight.element_size()
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and "lm_head" not in name
        ]
        return RowBytes(every_linear=max(sum(sizes), 1), cheapest=max(min(sizes, default=1), 1))

    def _wrapped_row_bytes(self) -> int:
        return max(
            1,
            sum(
                (w.in_features + w.out_features) * w.a_rows.element_size()
                for w in self.wrappers.values()
            ),
        )

    @property
    def used_rows(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._rows_of.values())

    def _allocate(self, count: int) -> list[int]:
        with self._lock:
            short = count - len(self._free_rows)
            if short > 0:
                grown = max(self._capacity * 2, self._capacity + short, _MIN_ROWS)
                if self.max_bytes is not None:
                    # Growing by doubling must not overshoot the memory budget; what the
                    # registry admitted (row count) always gets its rows, though.
                    fits = self.max_bytes // self._wrapped_row_bytes() + 1
                    grown = max(min(grown, fits), self._capacity + short)
                if self.max_rows is not None:
                    grown = min(grown, self.max_rows + 1)
                if grown - self._capacity < short:
                    raise ValueError(
                        f"no room for {count} rank rows: {self.max_rows} rows budgeted, "
                        f"{self._capacity - 1 - len(self._free_rows)} in use"
                    )
                self._free_rows.extend(range(grown - 1, self._capacity - 1, -1))
                self._capacity = grown
                for wrapper in self.wrappers.values():
                    wrapper.grow(grown)
            taken = self._free_rows[-count:] if count else []
            del self._free_rows[len(self._free_rows) - count :]
            return taken

    def free(self, slot: int) -> None:
        """Give ``slot``'s rank rows back (its adapter left the device tier)."""
        with self._lock:
            rows = self._rows_of.pop(slot, None)
            if rows:
                self._free_rows.extend(rows)
            if 0 <= slot < len(self.ranks):
                self.ranks[slot] = 0
            self.context.key = None

    # -- weights --------------------------------------------------------------------------

    def write(self, slot: int, adapter: LoadedAdapter) -> None:
        """Copy ``adapter`` into ``slot``: its rank rows in every wrapper (zeros where it
        has no weights)."""
        if not 1 <= slot <= self.slots:
            raise ValueError(f"slot {slot} out of range 1..{self.slots}")
        for module in adapter.weights:
            self._wrap(module)
        self.free(slot)
        rank = adapter.max_rank
        rows = self._allocate(rank)
        device = self._device_dtype()[0]
        ids = torch.tensor(rows, dtype=torch.long, device=device)
        for name, wrapper in self.wrappers.items():
            weights = adapter.weights.get(name)
            if weights is None:
                wrapper.write(ids, None, None, 0.0)
            else:
                wrapper.write(ids, weights.a, weights.b, weights.scale)
        with self._lock:
            self._rows_of[slot] = rows
            self.ranks[slot] = rank
            self.context.key = None

    # -- per step -------------------------------------------------------------------------

    def set_rows(self, slots: list[int], decode: bool = True) -> None:
        """Set the per-row slots for the next forward (``decode``: one token per row)."""
        ctx = self.context
        key = (tuple(slots), decode)
        if key == ctx.key and ctx.step is not None:
            return
        ctx.key = key
        ctx.decode = decode
        with self._lock:
            rows_of = [self._rows_of.get(s, []) if s else [] for s in slots]
        if not any(rows_of):
            ctx.step = None
            return
        device = self._device_dtype()[0]
        dtype = self._device_dtype()[1]

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        row_ids = [r for rows in rows_of for r in rows]
        owner = [i for i, rows in enumerate(rows_of) for _ in rows]
        first = [rows[0] if rows else 0 for rows in rows_of]
        offsets = []
        start = 0
        for rows in rows_of:
            offsets.append(start)
            start += len(rows)
        distinct: dict[int, list[int]] = {}
        for s, rows in zip(slots, rows_of, strict=True):
            if rows:
                distinct.setdefault(s, rows)
        active = [r for rows in distinct.values() for r in rows]
        stacked = choose_stacked(len(slots), len(active), len(row_ids))
        member = torch.zeros(0)
        if stacked and decode:
            columns: dict[int, tuple[int, int]] = {}
            start = 0
            for s, rows in distinct.items():
                columns[s] = (start, start + len(rows))
                start += len(rows)
            member = torch.zeros(len(slots), len(active), dtype=dtype)
            for i, s in enumerate(slots):
                if s in columns:
                    lo, hi = columns[s]
                    member[i, lo:hi] = 1
            member = member.to(device)
        widest = max(len(rows) for rows in rows_of)
        matrix = [rows + [0] * (widest - len(rows)) for rows in rows_of]
        ctx.step = _Step(
            row_ids=tensor(row_ids),
            owner=tensor(owner),
            offsets=tensor(offsets),
            first_row=tensor(first),
            active_rows=tensor(active),
            member=member,
            row_matrix=tensor([r for row in matrix for r in row]).view(len(slots), widest),
            stacked=stacked,
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
        with self._lock:
            wrapper = BatchedLoraLinear(base, self.context, self._capacity)
        setattr(parent, child, wrapper)
        self.wrappers[name] = wrapper
        self.context.key = None
