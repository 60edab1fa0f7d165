"""The batched LoRA ops: every row of a batch adds its own adapter's delta in one computation.

Adapters live in paged pools, one set per target module (S-LoRA's unified paging). A page
holds :data:`PAGE` rank rows of one adapter; an adapter of rank ``r`` owns
``ceil(r / PAGE)`` pages anywhere in the pool, and page 0 is all zeros: it pads and means
"no adapter". Per module:

- ``a_pages: [pages * in, PAGE]``: each page's slice of A, transposed. Row ``p * in + k``
  holds ``A[j, k]`` for the page's rank rows ``j``, so one page's ``A x`` is the sum of
  ``in`` table rows weighted by ``x[k]``: an ``embedding_bag``, which reads each weight
  once and writes only its ``[PAGE]`` result (a gather of A rows followed by a product
  writes and re-reads the whole gathered block, and cost 2-4x more on CPU).
- ``b_rows: [pages * PAGE, out]``: B's column for rank row ``j`` of page ``p`` at row
  ``p * PAGE + j``, already multiplied by the adapter's scaling in that module, so no op
  scales at run time; the B side is an ``embedding_bag`` too.

Rank rows an adapter lacks in a module (a smaller rank there, or a module it does not
target) are zero in both A and B and add exactly nothing. Each form adds PEFT's
``lora_B(lora_A(x)) * scaling`` for every row into ``y`` (the base layer's output) in
place, as Punica's and vLLM's ``add_lora`` kernels do, so no delta is allocated only to be
added:

- :func:`add_segmented_lora` (decode): each row's own pages only, so the cost follows
  the sum of the rows' ranks, never the number of distinct adapters (on CPU the native
  kernel of :mod:`loraland.serving.lora.native` computes the same sums, several times
  faster);
- :func:`add_stacked_lora` (decode): two dense GEMMs over the pages of the distinct
  adapters in the batch (gathered once by :func:`stacked_weights` and kept while that
  set holds), cheapest when few adapters share it;
- :func:`add_gathered_lora` (prefill): each row's pages gathered, two ``bmm`` per group
  of rows with as many pages (:func:`page_count_groups`), so a rank-4 prompt next to a
  rank-64 one is not padded to 64;
- :func:`pages_reference_lora_delta`: one row at a time with plain matmuls, the oracle.

Per decode step and module these are two or three torch calls: on CPU each call's fixed
cost is comparable to a rank-8 product, so the count matters as much as the arithmetic.
"""

from __future__ import annotations

import torch
from torch.nn.functional import embedding_bag

#: Rank rows per page. LoRA Land's adapters are rank 8, so a page is one adapter there; a
#: rank-4 adapter pads half a page, rank 16 takes two and rank 64 eight.
PAGE = 8


def pages_for(rank: int) -> int:
    return -(-rank // PAGE)


def page_rows(pages: torch.Tensor) -> torch.Tensor:
    """The rank rows of ``pages: [P]``, page after page: ``[P * PAGE]``."""
    lanes = torch.arange(PAGE, dtype=pages.dtype, device=pages.device)
    return (pages.unsqueeze(-1) * PAGE + lanes).reshape(-1)


def in_features(a_pages: torch.Tensor, b_rows: torch.Tensor) -> int:
    """The module's input width, from its pools (both hold the same number of pages)."""
    return a_pages.shape[0] // (b_rows.shape[0] // PAGE)


def a_bag_index(pages: torch.Tensor, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, offsets)`` of :func:`segmented_lora_delta`'s A side for ``pages: [P]``:
    one bag per page, over its ``d_in`` rows of ``a_pages``."""
    columns = torch.arange(d_in, dtype=pages.dtype, device=pages.device)
    index = (pages.unsqueeze(-1) * d_in + columns).reshape(-1)
    offsets = torch.arange(0, index.shape[0], d_in, dtype=pages.dtype, device=pages.device)
    return index, offsets


def add_segmented_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    page_owner: torch.Tensor | None,
    a_index: torch.Tensor,
    a_offsets: torch.Tensor,
    b_index: torch.Tensor,
    b_offsets: torch.Tensor,
) -> torch.Tensor:
    """Decode form: ``y[i] += B_i A_i x[i]`` for ``x: [n, in]``, ``y: [n, out]``; its cost
    follows the rows' own pages.

    The batch's pages are listed row after row (``P`` of them); ``page_owner: [P]`` is
    the batch row of each, or None when every row has exactly one page (then page ``i``
    is row ``i``'s). ``a_index``/``a_offsets`` come from :func:`a_bag_index`;
    ``b_index: [P * PAGE]`` is :func:`page_rows` of the pages and ``b_offsets: [n]``
    where each batch row's rank rows start. Returns ``y``.
    """
    rows = x if page_owner is None else x.index_select(0, page_owner)
    hidden = embedding_bag(
        a_index, a_pages, a_offsets, mode="sum", per_sample_weights=rows.reshape(-1)
    )
    delta = embedding_bag(
        b_index, b_rows, b_offsets, mode="sum", per_sample_weights=hidden.reshape(-1)
    )
    return y.add_(delta)


def stacked_weights(
    a_pages: torch.Tensor, b_rows: torch.Tensor, active_pages: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct adapters' pages as two dense matrices, ``A: [in, K]`` and
    ``B: [K, out]`` with ``K = len(active_pages) * PAGE``, for :func:`add_stacked_lora`."""
    d_in, d_out = in_features(a_pages, b_rows), b_rows.shape[-1]
    a = a_pages.view(-1, d_in, PAGE).index_select(0, active_pages)  # [Pk, in, PAGE]
    b = b_rows.view(-1, PAGE, d_out).index_select(0, active_pages)  # [Pk, PAGE, out]
    return a.permute(1, 0, 2).reshape(d_in, -1), b.view(-1, d_out)


def add_stacked_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    member: torch.Tensor | None,
) -> torch.Tensor:
    """Decode form over the distinct adapters' rank rows (``a``, ``b`` from
    :func:`stacked_weights`): ``y += ((x @ a) * member) @ b`` for ``x: [m, in]``;
    ``member: [m, K]`` is 1 where rank row j belongs to row i's adapter, None when every
    row uses the one adapter there is. Returns ``y``.

    Costs ``m x K``: cheapest when few adapters share the batch (one GEMM, no gather per
    row), wasteful when many do, which is when :func:`add_segmented_lora` wins.
    """
    hidden = x @ a
    if member is not None:
        hidden.mul_(member)
    return y.addmm_(hidden, b)


def page_count_groups(pages_of: list[list[int]]) -> list[tuple[list[int], list[list[int]]]]:
    """The batch rows by page count, ``(rows, their pages)`` per count, for
    :func:`add_gathered_lora`; rows without pages (no adapter) are in no group."""
    groups: dict[int, tuple[list[int], list[list[int]]]] = {}
    for row, own in enumerate(pages_of):
        if own:
            rows, pages = groups.setdefault(len(own), ([], []))
            rows.append(row)
            pages.append(own)
    return list(groups.values())


def gathered_groups(
    pages_of: list[list[int]], device: torch.device
) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
    """:func:`page_count_groups` as :func:`add_gathered_lora` takes them: per page count,
    its batch rows (None: every row) and their pages ``[rows, P]``, on ``device``."""
    every = len(pages_of)
    return [
        (
            None if len(rows) == every else torch.tensor(rows, device=device),
            torch.tensor(pages, dtype=torch.long, device=device),
        )
        for rows, pages in page_count_groups(pages_of)
    ]


def add_gathered_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    pages: torch.Tensor,
    rows: torch.Tensor | None,
) -> torch.Tensor:
    """Prefill form, ``x: [n, t, in]``, ``y: [n, t, out]``, for the batch ``rows`` that
    have the same number of pages (``pages: [len(rows), P]``; None: every row): their A
    and B gathered, then two ``bmm``. Prefill rows are few and long, so the copy of their
    pages is small next to the ``t``-token products. Returns ``y``."""
    d_in, d_out = x.shape[-1], b_rows.shape[-1]
    n = pages.shape[0]
    a = a_pages.view(-1, d_in, PAGE)[pages]  # [n, P, in, PAGE]
    a = a.permute(0, 2, 1, 3).reshape(n, d_in, -1)  # [n, in, P * PAGE]
    b = b_rows.view(-1, PAGE, d_out)[pages].view(n, -1, d_out)  # [n, P * PAGE, out]
    if rows is None:
        return y.baddbmm_(torch.bmm(x, a), b)
    hidden = torch.bmm(x.index_select(0, rows), a)
    return y.index_add_(0, rows, torch.bmm(hidden, b))


def page_weights(
    a_pages: torch.Tensor, b_rows: torch.Tensor, pages: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One adapter's ``A: [P * PAGE, in]`` and scaled ``B: [out, P * PAGE]`` back from its
    pages (zero rows where its rank is smaller)."""
    d_in, d_out = in_features(a_pages, b_rows), b_rows.shape[-1]
    index = torch.tensor(pages, dtype=torch.long)
    a = a_pages.view(-1, d_in, PAGE)[index].permute(0, 2, 1).reshape(-1, d_in)
    b = b_rows.view(-1, PAGE, d_out)[index].reshape(-1, d_out).T
    return a, b


def pages_reference_lora_delta(
    x: torch.Tensor, a_pages: torch.Tensor, b_rows: torch.Tensor, pages_of: list[list[int]]
) -> torch.Tensor:
    """The oracle: one batch row at a time (``x: [n, t, in]``), its adapter rebuilt as
    plain ``A`` and scaled ``B``."""
    out = []
    for i, pages in enumerate(pages_of):
        if not pages:
            out.append(torch.zeros(x.shape[1], b_rows.shape[1], dtype=x.dtype))
            continue
        a, b = page_weights(a_pages, b_rows, pages)
        out.append((x[i] @ a.T) @ b.T)
    return torch.stack(out)
