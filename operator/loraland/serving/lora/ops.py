"""The batched LoRA ops: every row of a batch applies its own adapter in one computation.

Adapters live in paged pools, one set per target module (S-LoRA's unified paging). A page
holds :data:`PAGE` rank rows of one adapter; an adapter of rank ``r`` owns
``ceil(r / PAGE)`` pages anywhere in the pool, and page 0 is all zeros (scale 0): it pads
and means "no adapter". Per module:

- ``a_pages: [pages * in, PAGE]``: each page's slice of A, transposed. Row ``p * in + k``
  holds ``A[j, k]`` for the page's rank rows ``j``, so one page's ``A x`` is the sum of
  ``in`` table rows weighted by ``x[k]``: an ``embedding_bag``, which reads each weight
  once and writes only its ``[PAGE]`` result (a gather of A rows followed by a product
  writes and re-reads the whole gathered block, and cost 2-4x more on CPU).
- ``b_rows: [pages * PAGE, out]``: B's column for rank row ``j`` of page ``p`` at row
  ``p * PAGE + j``; the B side is an ``embedding_bag`` too.
- ``scale_pages: [pages]``: the adapter's scaling on each of its pages.

Rank rows an adapter lacks in a module (a smaller rank there, or a module it does not
target) are zero in both A and B and add exactly nothing. For a row with adapter A, B
and scaling ``s`` each form computes PEFT's ``lora_B(lora_A(x)) * s``:

- :func:`segmented_lora_delta` (decode): each row's own pages only, so the cost follows
  the sum of the rows' ranks, never the number of distinct adapters;
- :func:`stacked_lora_delta` (decode): two dense GEMMs over the pages of the distinct
  adapters in the batch, cheapest when few adapters share it;
- :func:`padded_gather_lora_delta` (prefill): each row's pages gathered, two ``bmm``;
- :func:`pages_reference_lora_delta`: one row at a time with plain matmuls, the oracle.
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


def a_bag_index(pages: torch.Tensor, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, offsets)`` of :func:`segmented_lora_delta`'s A side for ``pages: [P]``:
    one bag per page, over its ``d_in`` rows of ``a_pages``."""
    columns = torch.arange(d_in, dtype=pages.dtype, device=pages.device)
    index = (pages.unsqueeze(-1) * d_in + columns).reshape(-1)
    offsets = torch.arange(0, index.shape[0], d_in, dtype=pages.dtype, device=pages.device)
    return index, offsets


def segmented_lora_delta(
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    scale_pages: torch.Tensor,
    page_owner: torch.Tensor,
    a_index: torch.Tensor,
    a_offsets: torch.Tensor,
    b_index: torch.Tensor,
    b_offsets: torch.Tensor,
    first_page: torch.Tensor,
) -> torch.Tensor:
    """Decode form, ``x: [n, in]`` -> ``[n, out]``; its cost follows the rows' own pages.

    The batch's pages are listed row after row (``P`` of them); ``page_owner: [P]`` is
    the batch row of each. ``a_index``/``a_offsets`` come from :func:`a_bag_index`;
    ``b_index: [P * PAGE]`` is :func:`page_rows` of the pages and ``b_offsets: [n]``
    where each batch row's rank rows start. ``first_page: [n]`` is one page of each row
    (0 without adapter), whose scale is the row's scaling.
    """
    weights = x.index_select(0, page_owner).reshape(-1)  # x[k] for each page's bag
    hidden = embedding_bag(a_index, a_pages, a_offsets, mode="sum", per_sample_weights=weights)
    delta = embedding_bag(
        b_index, b_rows, b_offsets, mode="sum", per_sample_weights=hidden.reshape(-1)
    )  # [n, out]
    return delta * scale_pages.index_select(0, first_page).unsqueeze(-1)


def stacked_lora_delta(
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    scale_pages: torch.Tensor,
    active_pages: torch.Tensor,
    member: torch.Tensor,
    first_page: torch.Tensor,
) -> torch.Tensor:
    """Decode form over the distinct adapters' pages, ``x: [m, in]`` -> ``[m, out]``: two
    dense GEMMs over their ``K = len(active_pages) * PAGE`` rank rows; ``member: [m, K]``
    is 1 where rank row j belongs to row i's adapter.

    Costs ``m x K``: cheapest when few adapters share the batch (one GEMM, no gather per
    row), wasteful when many do, which is when :func:`segmented_lora_delta` wins.
    """
    d_in, d_out = x.shape[-1], b_rows.shape[-1]
    a = a_pages.view(-1, d_in, PAGE).index_select(0, active_pages)  # [Pk, in, PAGE]
    hidden = (x @ a.permute(1, 0, 2).reshape(d_in, -1)) * member  # [m, K]
    b = b_rows.view(-1, PAGE, d_out).index_select(0, active_pages).view(-1, d_out)
    return (hidden @ b) * scale_pages.index_select(0, first_page).unsqueeze(-1)


def padded_gather_lora_delta(
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    scale_pages: torch.Tensor,
    page_matrix: torch.Tensor,
) -> torch.Tensor:
    """Prefill form, ``x: [n, t, in]`` -> ``[n, t, out]``: each row's own A and B gathered
    (``page_matrix: [n, P]``, the row's pages padded with page 0 up to the batch's most),
    then two ``bmm``. Prefill rows are few and long, so the copy of their pages is small
    next to the ``t``-token products."""
    n, d_in, d_out = x.shape[0], x.shape[-1], b_rows.shape[-1]
    a = a_pages.view(-1, d_in, PAGE)[page_matrix]  # [n, P, in, PAGE]
    a = a.permute(0, 2, 1, 3).reshape(n, d_in, -1)  # [n, in, P * PAGE]
    b = b_rows.view(-1, PAGE, d_out)[page_matrix].view(n, -1, d_out)  # [n, P * PAGE, out]
    delta = torch.bmm(torch.bmm(x, a), b)
    return delta * scale_pages.index_select(0, page_matrix[:, 0]).view(-1, 1, 1)


def page_weights(
    a_pages: torch.Tensor, b_rows: torch.Tensor, pages: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One adapter's ``A: [P * PAGE, in]`` and ``B: [out, P * PAGE]`` back from its pages
    (zero rows where its rank is smaller)."""
    d_out = b_rows.shape[-1]
    d_in = a_pages.shape[0] // (b_rows.shape[0] // PAGE)
    index = torch.tensor(pages, dtype=torch.long)
    a = a_pages.view(-1, d_in, PAGE)[index].permute(0, 2, 1).reshape(-1, d_in)
    b = b_rows.view(-1, PAGE, d_out)[index].reshape(-1, d_out).T
    return a, b


def pages_reference_lora_delta(
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    scale_pages: torch.Tensor,
    pages_of: list[list[int]],
) -> torch.Tensor:
    """The oracle: one batch row at a time (``x: [n, t, in]``), its adapter rebuilt as
    plain ``A``, ``B`` and PEFT's formula."""
    out = []
    for i, pages in enumerate(pages_of):
        if not pages:
            out.append(torch.zeros(x.shape[1], b_rows.shape[1], dtype=x.dtype))
            continue
        a, b = page_weights(a_pages, b_rows, pages)
        out.append((x[i] @ a.T) @ b.T * scale_pages[pages[0]])
    return torch.stack(out)
