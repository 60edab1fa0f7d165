"""Wrapping a base model's Linear modules so each batch row gets its own LoRA delta.

:class:`BatchedLoraLinear` replaces a target ``nn.Linear`` (``q_proj``, ``v_proj``...) and
computes ``base(x) + delta`` with the paged ops of :mod:`loraland.serving.lora.ops` over
its module's page pools. All wrappers share one :class:`LoraContext`, which the engine
sets before each forward with the per-row adapters (through
:meth:`~loraland.serving.lora.bank.LoraSlotBank.set_rows`, which owns the wrappers and
what is in their pools), so the transformers model itself is untouched: its attention,
KV cache and masks work as they always do.

Per decode step the bank picks the cheaper form from a cost model
(:func:`~loraland.serving.lora.bank.choose_stacked`): the stacked GEMMs while few
adapters share the batch, the segmented form once many do: the native kernel on CPU
where it could be built (:mod:`loraland.serving.lora.native`), else the embedding bags
on CPU; on a GPU each row's pages gathered (``bmm`` per group of rows with as many
pages), since a bag's sum over the input runs serially there, one thread per output (on
an H200, bf16, a 7B shape's attention: 32 users over 40 adapters decoded at 171 tok/s
through the bags, 853 over 8 through the stacked GEMMs), though stacking wins there up
to far larger mixes (:data:`~loraland.serving.lora.bank.GATHERED_SEGMENT_COST`).
Prefill runs the native kernel too, up to :data:`NATIVE_PREFILL_TOKENS` tokens a row;
otherwise it gathers each row's pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from loraland.serving.lora.loading import ModuleWeights
from loraland.serving.lora.native import PagedLoraOp
from loraland.serving.lora.ops import (
    PAGE,
    a_bag_index,
    add_gathered_lora,
    add_segmented_lora,
    add_stacked_lora,
    gathered_groups,
    stacked_weights,
)

#: Longest prompt (or prefill chunk) the native kernel prefills; longer ones take the
#: gathered pages and ``bmm``. The kernel passes four token rows at a time over each page
#: (no page copies, no per-group calls): per 576-wide module, 2 threads, 32 x 40 tokens
#: on ranks 4-64 took 1.06 ms against the gathered form's 2.10, 8 x 256 1.26 against
#: 1.97 (rank 8: 0.48 against 0.67), but 4 x 512 on ranks 4-64 2.63 against 2.16: there
#: the ``bmm`` are GEMMs big enough to pay. 256 is also the default prefill chunk.
NATIVE_PREFILL_TOKENS = 256


def untouched_pool(like: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    """A ``[rows, width]`` pool on ``like``'s device and dtype, contents undefined.

    Never zeroed as a whole: that would touch (and on CPU, commit) all of it at once. A
    page is written whole in every wrapper before anything reads it: by
    :meth:`LoraSlotBank.write`, and by a wrapper created later for the pages in use."""
    return like.new_empty(rows, width)


@dataclass
class BatchStep:
    """Index tensors of one batch composition (reused while the composition holds)."""

    #: Every batch row's pages, row after row, and the batch row each belongs to
    #: (``page_owner``: None when every row has exactly one page, page i being row i's).
    pages: torch.Tensor
    owner: torch.Tensor
    page_owner: torch.Tensor | None
    #: B side of the segmented form: the pages' rank rows and where each row's start.
    b_index: torch.Tensor
    b_offsets: torch.Tensor
    #: Stacked form: pages of the distinct adapters, and which rank rows each row uses
    #: (None: every row uses the one adapter there is).
    active_pages: torch.Tensor
    member: torch.Tensor | None
    #: What the wrappers' gathered stacked weights were made from (weights version and
    #: pages): compositions change nearly every step, the distinct adapters seldom.
    stacked_key: tuple[int, tuple[int, ...]]
    #: Each row's pages, for the prefill groups (made when a multi-token forward needs them).
    pages_of: list[list[int]]
    stacked: bool
    #: A side of the segmented form per input width (made by the first module of each).
    a_bags: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _prefill_groups: list[tuple[torch.Tensor | None, torch.Tensor]] | None = None

    @property
    def prefill_groups(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """Per page count, its rows (None: every row) and their pages ``[rows, P]``."""
        if self._prefill_groups is None:
            self._prefill_groups = gathered_groups(self.pages_of, self.pages.device)
        return self._prefill_groups

    def a_bag(self, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
        bag = self.a_bags.get(d_in)
        if bag is None:
            bag = self.a_bags[d_in] = a_bag_index(self.pages, d_in)
        return bag


@dataclass
class LoraContext:
    """Per-forward state shared by every wrapper (set by :meth:`LoraSlotBank.set_rows`)."""

    step: BatchStep | None = None
    #: The native kernel, or None for the torch forms.
    native: PagedLoraOp | None = None
    #: Tokens per row of the next forward: 1 means decode.
    decode: bool = True
    #: Decode's segmented form gathers each row's pages (off the CPU) instead of the bags.
    gathered_decode: bool = False
    #: Last composition, so a decode step over the same rows rebuilds nothing.
    key: tuple[tuple[int, ...], bool] | None = None


class BatchedLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, context: LoraContext, pages: int) -> None:
        super().__init__()
        self.base = base
        self.context = context
        self.in_features = base.in_features
        self.out_features = base.out_features
        weight = base.weight
        self.a_pages = untouched_pool(weight, pages * base.in_features, PAGE)
        self.b_rows = untouched_pool(weight, pages * PAGE, base.out_features)
        self.a_pages[: base.in_features].zero_()  # page 0, which padding points at
        self.b_rows[:PAGE].zero_()
        self._stacked: tuple[tuple[int, tuple[int, ...]], torch.Tensor, torch.Tensor] | None
        self._stacked = None
        self._page_views()

    @property
    def pages(self) -> int:
        """Pages the pools hold, the zero page included."""
        return self.b_rows.shape[0] // PAGE

    def _page_views(self) -> None:
        """The pools by page, ``[pages, in, PAGE]`` and ``[pages, PAGE, out]``: what
        :meth:`page_copies` takes page views of (kept: it runs for every wrapper)."""
        self._a_by_page = self.a_pages.view(-1, self.in_features, PAGE)
        self._b_by_page = self.b_rows.view(-1, PAGE, self.out_features)

    def grow(self, pages: int) -> None:
        have = self.pages
        if pages <= have:
            return
        for name, per_page in (("a_pages", self.in_features), ("b_rows", PAGE)):
            old = getattr(self, name)
            new = untouched_pool(old, pages * per_page, old.shape[1])
            new[: have * per_page] = old
            setattr(self, name, new)
        self._page_views()

    def page_copies(
        self,
        pages: list[int],
        weights: ModuleWeights | None,
        copies: tuple[list[torch.Tensor], list[torch.Tensor]],
        zeros: list[torch.Tensor],
    ) -> None:
        """What filling ``pages`` (the adapter's, all of them) with ``weights`` takes:
        appends (destination, source) page views to ``copies`` and the pages to clear to
        ``zeros``, for :meth:`LoraSlotBank.write` to do for every wrapper at once.

        Whatever a previous owner left in the pages is overwritten, never read: pages
        past the module's own (a smaller rank here than the adapter's largest, or no
        weights in this module) are zeroed. ``weights`` come in the pools' page layout
        already (B scaled), so only whole pages are copied."""
        own = 0 if weights is None else weights.a_pages.shape[0]
        destinations, sources = copies
        for j, page in enumerate(pages):
            if weights is not None and j < own:
                destinations += (self._a_by_page[page], self._b_by_page[page])
                sources += (weights.a_pages[j], weights.b_pages[j])
            else:
                zeros += (self._a_by_page[page], self._b_by_page[page])

    def page_moves(
        self, moves: list[tuple[int, int]], copies: tuple[list[torch.Tensor], list[torch.Tensor]]
    ) -> None:
        """Appends (destination, source) page views that move pages ``(from, to)``."""
        destinations, sources = copies
        for old, new in moves:
            destinations += (self._a_by_page[new], self._b_by_page[new])
            sources += (self._a_by_page[old], self._b_by_page[old])

    def zero_pages(self, pages: list[int]) -> None:
        if pages:
            torch._foreach_zero_(
                [view for page in pages for view in (self._a_by_page[page], self._b_by_page[page])]
            )

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
        context = self.context
        if tokens == 1 and context.decode and (step.stacked or not context.gathered_decode):
            flat, out = x.view(n, self.in_features), y.view(n, self.out_features)
            if step.stacked:
                a, b = self._stacked_weights(step)
                add_stacked_lora(out, flat, a, b, step.member)
            elif context.native is not None:
                context.native(out, flat, self.a_pages, self.b_rows, step.pages, step.owner)
            else:
                a_index, a_offsets = step.a_bag(self.in_features)
                add_segmented_lora(
                    out,
                    flat,
                    self.a_pages,
                    self.b_rows,
                    step.page_owner,
                    a_index,
                    a_offsets,
                    step.b_index,
                    step.b_offsets,
                )
            return y
        if context.native is not None and tokens <= NATIVE_PREFILL_TOKENS and x.is_contiguous():
            context.native(
                y.view(n * tokens, self.out_features),
                x.view(n * tokens, self.in_features),
                self.a_pages,
                self.b_rows,
                step.pages,
                step.owner,
                tokens,
            )
            return y
        for rows, pages in step.prefill_groups:
            add_gathered_lora(y, x, self.a_pages, self.b_rows, pages, rows)
        return y

    def _stacked_weights(self, step: BatchStep) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._stacked
        if cached is not None and cached[0] == step.stacked_key:
            return cached[1], cached[2]
        a, b = stacked_weights(self.a_pages, self.b_rows, step.active_pages)
        self._stacked = (step.stacked_key, a, b)
        return a, b
