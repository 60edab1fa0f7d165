"""The adapter slots of one model: which adapter's pages sit where in the wrappers' pools.

:class:`LoraSlotBank` wraps the model's target Linears (:mod:`loraland.serving.lora.layers`)
the first time an adapter targets them and owns their page pools. An adapter of rank
``r`` in slot ``s`` owns ``ceil(r / PAGE)`` pages of every wrapper's pool (zero rank rows
where it does not target that module, or has a smaller rank there): no padding to a
common rank and no fragmentation (S-LoRA's unified paging).
:class:`~loraland.serving.lora.pages.PagePool` places them, one run of consecutive pages
where it can, which the decode kernel reads as a stream.

With a memory budget (``max_bytes`` over the wrapped modules, which the registry keeps
by charging each adapter for its own modules: see :func:`adapter_device_bytes`) the
pools take all of it the first time an adapter needs pages, left untouched: on CPU the
OS maps memory only as pages are first written, so an idle budget costs nothing (with
``loraland serve``'s huge pages, 2 MiB of each pool at a time: see
``serving/torch_defaults.py``), and the engine thread never stops to copy every pool
into a bigger one (growing by doubling did: up to 530 ms at a time on the embedded
model, 1.1 s over its first 300 adapters; the first write of each page now pays its
page faults instead, about 3 ms a rank-8 adapter with 4 KiB pages). Without a budget
they grow by doubling up to ``max_rows`` (a hard cap, in rank rows). Only the engine
thread writes weights and sets rows; :meth:`LoraSlotBank.free` may come from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from loraland.serving.lora.layers import BatchedLoraLinear, BatchStep, LoraContext
from loraland.serving.lora.loading import LoadedAdapter
from loraland.serving.lora.native import PagedLoraOp
from loraland.serving.lora.ops import PAGE, page_rows, pages_for
from loraland.serving.lora.pages import PagePool

#: Cost of one rank row in the segmented decode form, relative to one (row, rank-row)
#: entry of the stacked form's dense GEMMs. ``benchmarks/serving/lora_ops.py`` measures
#: both: on CPU (576-wide layers, 32 rows, 1 or 2 threads) the GEMMs on weights already
#: gathered cost what the bags cost at about 16 distinct rank-8 adapters (64 vs 62 us),
#: and at about 4 when every step gathers them anew (67 vs 59 us). The gathered weights
#: are kept while the set of distinct adapters holds, which in a batch on a few adapters
#: is most steps, so the break-even is put between the two: stacked up to 8 adapters.
SEGMENT_COST = 8.0

#: :data:`SEGMENT_COST` for the native kernel (:mod:`loraland.serving.lora.native`), whose
#: pages cost about a quarter of the bags' on weights in cache (the same benchmark, 2
#: threads: 32 distinct rank-8 adapters 20 us against 89; one adapter 22.5 us against the
#: stacked GEMMs' 23.2). It beats stacking from 2 distinct rank-8 adapters, later with
#: high ranks (4 adapters on ranks 4-64: 73 us against 60 stacked); 3 sits between.
NATIVE_SEGMENT_COST = 3.0

#: :data:`SEGMENT_COST` off the CPU, where decode's segmented form gathers each row's
#: pages. On a GPU both forms are a few kernel launches at serving batch sizes, so the
#: launches decide, not the arithmetic: ``benchmarks/serving/lora_ops.py --device cuda
#: --dtype bfloat16 --dim 4096 --out 4096`` on an H200 (32 rows, each call waited for)
#: gave the stacked GEMMs 52-74 us on gathered weights and 102-169 us gathering them too,
#: against 108-146 us for the gathered pages on rank 8 and 393-470 us on ranks 4-64 (a
#: gather and two ``bmm`` per page count). Stacking wins or ties up to 32 distinct
#: adapters in 32 rows, where this constant puts the tie (rows x K = 32 R); past it the
#: gathered pages' launches stay as they are while the stacked GEMMs grow with rows x K.
GATHERED_SEGMENT_COST = 32.0

_MIN_PAGES = 32


def choose_stacked(
    rows: int, distinct_rank_sum: int, rank_sum: int, segment_cost: float = SEGMENT_COST
) -> bool:
    """The cost model: stacked does ``rows x K`` work, segmented ``segment_cost x R``."""
    return rows * distinct_rank_sum <= segment_cost * rank_sum


@dataclass(frozen=True)
class RowBytes:
    """What one rank row costs in a model's Linears (``lm_head`` excluded)."""

    #: On every Linear of the decoder: the most an adapter can cost per rank.
    every_linear: int
    #: On its cheapest single Linear: the least an adapter can cost (rank 1, one module).
    cheapest: int


def adapter_device_bytes(adapter: LoadedAdapter) -> int:
    """The device-tier charge of ``adapter``: its pages in the modules it targets.

    Pages are allocated for the adapter's largest rank in each module it targets, so a
    rank-8 adapter on q/k/v/o costs 8 rank rows of those four, not of the MLP as well
    (2.65x less on the embedded SmolLM2-135M). The pools are page-unified, so when
    adapters of one server target different modules each also holds zero rows in the
    others' modules, which this does not charge; :class:`LoraSlotBank` then outgrows
    ``max_bytes`` rather than refuse an adapter the registry admitted.
    """
    rows = pages_for(adapter.max_rank) * PAGE
    return sum(
        rows * (w.a_pages.shape[1] + w.b_pages.shape[2]) * w.a_pages.element_size()
        for w in adapter.weights.values()
    )


@dataclass
class LoraSlotBank:
    """Adapter slots of one model: slot 0 is "no adapter", 1..slots hold adapters.

    ``max_rows`` caps the rank rows all resident adapters hold together (None: grow as
    needed); ``max_bytes`` caps growth by memory over the wrapped modules. The registry
    keeps within the budget by evicting. ``native``: the kernel of
    :func:`~loraland.serving.lora.native.paged_lora_op`, used where the model is float32
    on the CPU (elsewhere, and when None, the torch forms run).
    """

    model: nn.Module
    slots: int
    max_rows: int | None = None
    max_bytes: int | None = None
    context: LoraContext = field(default_factory=LoraContext)
    wrappers: dict[str, BatchedLoraLinear] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)
    native: PagedLoraOp | None = None

    def __post_init__(self) -> None:
        self.ranks = [0] * (self.slots + 1)
        device, dtype = self._device_dtype()
        if (device.type, dtype) != ("cpu", torch.float32):
            self.native = None
        self.context.native = self.native
        self.context.gathered_decode = device.type != "cpu"
        self._pages_of: dict[int, list[int]] = {}
        self._pool = PagePool()
        #: Bumped whenever pages change hands or contents, so gathered weights go stale.
        self._version = 0
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

    def _wrapped_page_bytes(self) -> int:
        return PAGE * max(
            1,
            sum(
                (w.in_features + w.out_features) * w.b_rows.element_size()
                for w in self.wrappers.values()
            ),
        )

    @property
    def used_rows(self) -> int:
        """Rank rows the resident adapters hold, whole pages."""
        with self._lock:
            return PAGE * sum(len(p) for p in self._pages_of.values())

    def _allocate(self, count: int) -> list[int]:
        """``count`` pages for one adapter, one run where :class:`PagePool` can make one
        (moving single-page adapters out of the way: call with the lock held)."""
        pool = self._pool
        short = count - pool.free_count
        if short > 0:
            if self.max_bytes is not None:
                # All the budget at once (see the module docstring); what the registry
                # admitted (page count) always gets its pages, though.
                fits = self.max_bytes // self._wrapped_page_bytes() + 1
                grown = max(fits, pool.capacity + short)
            else:
                grown = max(pool.capacity * 2, pool.capacity + short, _MIN_PAGES)
            if self.max_rows is not None:
                grown = min(grown, self.max_rows // PAGE + 1)
            if grown - pool.capacity < short:
                in_use = PAGE * (pool.capacity - 1 - pool.free_count)
                raise ValueError(
                    f"no room for {count * PAGE} rank rows: {self.max_rows} rows "
                    f"budgeted, {in_use} in use"
                )
            pool.extend(grown)
            for wrapper in self.wrappers.values():
                wrapper.grow(grown)
        singles: dict[int, int] = {}  # page -> slot of the adapters that may move
        if count > 1:
            singles = {own[0]: slot for slot, own in self._pages_of.items() if len(own) == 1}
        taken = pool.take(count, frozenset(singles))
        if taken.moves:
            self._move_pages(taken.moves, singles)
        return taken.pages

    def _move_pages(self, moves: list[tuple[int, int]], owner_of: dict[int, int]) -> None:
        """Copy each moved page's contents in every wrapper and give its owner the new page."""
        destinations: list[torch.Tensor] = []
        sources: list[torch.Tensor] = []
        for wrapper in self.wrappers.values():
            wrapper.page_moves(moves, (destinations, sources))
        torch._foreach_copy_(destinations, sources)
        for old, new in moves:
            self._pages_of[owner_of[old]] = [new]
        self._version += 1

    def free(self, slot: int) -> None:
        """Give ``slot``'s pages back (its adapter left the device tier)."""
        with self._lock:
            pages = self._pages_of.pop(slot, None)
            if pages:
                self._pool.release(pages)
            if 0 <= slot < len(self.ranks):
                self.ranks[slot] = 0
            self._version += 1
            self.context.key = None

    # -- weights --------------------------------------------------------------------------

    def write(self, slot: int, adapter: LoadedAdapter) -> None:
        """Copy ``adapter`` into ``slot``: its pages in every wrapper (zeros where it has
        no weights)."""
        if not 1 <= slot <= self.slots:
            raise ValueError(f"slot {slot} out of range 1..{self.slots}")
        for module in adapter.weights:
            self._wrap(module)
        self.free(slot)
        rank = adapter.max_rank
        with self._lock:
            pages = self._allocate(pages_for(rank))
        destinations: list[torch.Tensor] = []
        sources: list[torch.Tensor] = []
        zeros: list[torch.Tensor] = []
        for name, wrapper in self.wrappers.items():
            wrapper.page_copies(pages, adapter.weights.get(name), (destinations, sources), zeros)
        # One call for every page of every module (torch's multi-tensor ops, as its
        # optimizers use), not two per module: this runs on the engine thread, and under
        # load each torch call may wait for the GIL (HTTP, adapter loads), which made a
        # copy that takes 2 ms alone average 13-25 ms in the server.
        torch._foreach_copy_(destinations, sources, non_blocking=True)
        if zeros:
            torch._foreach_zero_(zeros)
        with self._lock:
            self._pages_of[slot] = pages
            self.ranks[slot] = rank
            self._version += 1
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
            pages_of = [self._pages_of.get(s, []) if s else [] for s in slots]
            version = self._version
        if not any(pages_of):
            ctx.step = None
            return
        device, dtype = self._device_dtype()

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        pages = tensor([p for own in pages_of for p in own])
        starts, start = [], 0
        for own in pages_of:
            starts.append(start * PAGE)
            start += len(own)
        distinct: dict[int, list[int]] = {}
        for s, own in zip(slots, pages_of, strict=True):
            if own:
                distinct.setdefault(s, own)
        active = [p for own in distinct.values() for p in own]
        stacked = decode and choose_stacked(
            len(slots), PAGE * len(active), PAGE * int(pages.shape[0]), self._segment_cost()
        )
        member: torch.Tensor | None = None
        if stacked and (len(distinct) > 1 or not all(pages_of)):
            columns: dict[int, tuple[int, int]] = {}
            start = 0
            for s, own in distinct.items():
                columns[s] = (start, start + PAGE * len(own))
                start += PAGE * len(own)
            member = torch.zeros(len(slots), PAGE * len(active), dtype=dtype)
            for i, s in enumerate(slots):
                if s in columns:
                    lo, hi = columns[s]
                    member[i, lo:hi] = 1
            member = member.to(device)
        owner = tensor([i for i, own in enumerate(pages_of) for _ in own])
        one_page_each = all(len(own) == 1 for own in pages_of)
        ctx.step = BatchStep(
            pages=pages,
            owner=owner,
            page_owner=None if one_page_each else owner,
            b_index=page_rows(pages),
            b_offsets=tensor(starts),
            active_pages=tensor(active),
            member=member,
            stacked_key=(version, tuple(active)),
            pages_of=pages_of,
            stacked=stacked,
        )

    def _segment_cost(self) -> float:
        """The cost model's constant for the segmented form this bank runs."""
        if self.native is not None:
            return NATIVE_SEGMENT_COST
        return GATHERED_SEGMENT_COST if self.context.gathered_decode else SEGMENT_COST

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
            wrapper = BatchedLoraLinear(base, self.context, self._pool.capacity)
            # The resident adapters do not target this module: their pages here are zero.
            wrapper.zero_pages([page for own in self._pages_of.values() for page in own])
        setattr(parent, child, wrapper)
        self.wrappers[name] = wrapper
        self.context.key = None
