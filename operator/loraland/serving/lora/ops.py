"""The batched LoRA op: every row of a batch applies its own adapter in one computation.

Slot tensors stack all device-resident adapters of one target module:
``A: [slots, r, in]``, ``B: [slots, out, r]``, ``scale: [slots]``, zero-padded to a common
rank ``r`` (zero rows of A and zero columns of B add exactly nothing). Slot 0 is all
zeros and means "no adapter". For a row with slot ``s`` the delta is PEFT's
``lora_B(lora_A(x)) * scaling``:

    delta = (x @ A[s]^T) @ B[s]^T * scale[s]

:func:`batched_lora_delta` computes it for all rows at once without copying weights
per row: the ``k`` distinct slots of the batch are stacked side by side, so

    h     = x @ [A[s1]; ...; A[sk]]^T           one GEMM, [rows, k*r]
    h     = h * onehot(slot of the row)          zero the other adapters' columns
    delta = h @ [B[s1], ..., B[sk]]^T * scale    one GEMM, [rows, out]

Two GEMMs per layer whatever the mix (``k`` is at most the number of slots, and the
wasted work is ``k`` times a rank-``r`` product, small next to the base layer), so a
batch spread over 8 adapters costs about what a batch on one adapter costs.
:func:`gather_lora_delta` (per-row gather + ``bmm``) and :func:`reference_lora_delta`
(a plain loop) are the same math, kept as test oracles.
"""

from __future__ import annotations

import torch


def slot_layout(row_slots: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(active, onehot)`` for :func:`batched_lora_delta` from each row's slot ``[rows]``."""
    active, position = torch.unique(row_slots, sorted=True, return_inverse=True)
    onehot = torch.zeros(row_slots.shape[0], active.shape[0], dtype=dtype, device=row_slots.device)
    onehot[torch.arange(row_slots.shape[0], device=row_slots.device), position] = 1
    return active, onehot


def batched_lora_delta(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: torch.Tensor,
    active: torch.Tensor,
    onehot: torch.Tensor,
    row_slots: torch.Tensor,
) -> torch.Tensor:
    """Delta for ``x: [rows, in]`` -> ``[rows, out]``.

    ``active: [k]`` lists the distinct slots in use; ``onehot: [rows, k]`` marks each
    row's position among them (0/1); ``row_slots: [rows]`` is each row's slot.
    """
    k, rank, d_in = active.shape[0], lora_a.shape[1], lora_a.shape[2]
    a = lora_a.index_select(0, active).reshape(k * rank, d_in)  # [k*r, in]
    b = lora_b.index_select(0, active)  # [k, out, r]
    d_out = b.shape[1]
    b = b.permute(1, 0, 2).reshape(d_out, k * rank)  # [out, k*r]
    hidden = (x @ a.T).view(-1, k, rank) * onehot.unsqueeze(-1)
    delta = hidden.view(-1, k * rank) @ b.T
    return delta * scale.index_select(0, row_slots).unsqueeze(-1)


def gather_lora_delta(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: torch.Tensor,
    idx: torch.Tensor,
) -> torch.Tensor:
    """The same for ``x: [n, t, in]`` with per-row slots ``idx: [n]``, by gathering each
    row's A and B (one copy of the weights per row) and two ``bmm``."""
    a = lora_a.index_select(0, idx)  # [n, r, in]
    b = lora_b.index_select(0, idx)  # [n, out, r]
    hidden = torch.bmm(x, a.transpose(1, 2))  # [n, t, r]
    delta = torch.bmm(hidden, b.transpose(1, 2))  # [n, t, out]
    return delta * scale.index_select(0, idx).view(-1, 1, 1)


def reference_lora_delta(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: torch.Tensor,
    idx: torch.Tensor,
) -> torch.Tensor:
    """One row at a time with plain matmuls (``x: [n, t, in]``): the test oracle."""
    rows = []
    for i in range(x.shape[0]):
        slot = int(idx[i])
        rows.append((x[i] @ lora_a[slot].T) @ lora_b[slot].T * scale[slot])
    return torch.stack(rows)


# -- rank-row forms ----------------------------------------------------------------------
#
# The forms below read adapters from rank-row pools (S-LoRA's unified paging, one page
# per rank): per target module ``a_rows: [rows, in]`` holds row ``j`` of some adapter's
# A, ``b_rows: [rows, out]`` the matching column of its B, and ``scale_rows: [rows]`` its
# scaling. An adapter of rank ``r`` owns ``r`` rows anywhere in the pool; row 0 is all
# zeros (scale 0) and pads. So a batch's LoRA work is a gather of exactly the rows its
# requests use, and a rank-4 row costs a quarter of a rank-16 one whatever else runs.


def segmented_lora_delta(
    x: torch.Tensor,
    a_rows: torch.Tensor,
    b_rows: torch.Tensor,
    scale_rows: torch.Tensor,
    row_ids: torch.Tensor,
    owner: torch.Tensor,
    offsets: torch.Tensor,
    first_row: torch.Tensor,
) -> torch.Tensor:
    """Decode form, ``x: [n, in]`` -> ``[n, out]``: cost follows the sum of the rows' ranks.

    ``row_ids: [R]`` lists every batch row's own rank rows, row after row (``R`` = the sum
    of their ranks), ``owner: [R]`` the batch row each belongs to and ``offsets: [n]``
    where each row's run starts; ``first_row: [n]`` is one rank row of each batch row (0
    without adapter), whose scale is the row's scaling. The A side is one elementwise
    product over the gathered rows; the B side is ``embedding_bag``: a weighted sum of
    each row's B columns that gathers and reduces in one pass, without an ``[R, out]``
    intermediate.
    """
    hidden = (x.index_select(0, owner) * a_rows.index_select(0, row_ids)).sum(-1)  # [R]
    delta = torch.nn.functional.embedding_bag(
        row_ids, b_rows, offsets, mode="sum", per_sample_weights=hidden
    )  # [n, out]
    return delta * scale_rows.index_select(0, first_row).unsqueeze(-1)


def stacked_rows_lora_delta(
    x: torch.Tensor,
    a_rows: torch.Tensor,
    b_rows: torch.Tensor,
    scale_rows: torch.Tensor,
    active_rows: torch.Tensor,
    member: torch.Tensor,
    first_row: torch.Tensor,
) -> torch.Tensor:
    """The stacked form on rank rows, ``x: [m, in]`` -> ``[m, out]``: two dense GEMMs over
    the rows of the ``k`` distinct adapters in use (``active_rows: [K]``, K = the sum of
    their ranks); ``member: [m, K]`` is 1 where column j belongs to row i's adapter.

    Costs ``m x K``: cheapest when few adapters share the batch (one GEMM, no gather per
    row), wasteful when many do, which is when :func:`segmented_lora_delta` wins.
    """
    hidden = (x @ a_rows.index_select(0, active_rows).T) * member  # [m, K]
    delta = hidden @ b_rows.index_select(0, active_rows)  # [m, out]
    return delta * scale_rows.index_select(0, first_row).unsqueeze(-1)


def padded_gather_lora_delta(
    x: torch.Tensor,
    a_rows: torch.Tensor,
    b_rows: torch.Tensor,
    scale_rows: torch.Tensor,
    row_matrix: torch.Tensor,
) -> torch.Tensor:
    """Prefill form, ``x: [n, t, in]`` -> ``[n, t, out]``: each row's own A and B gathered
    (``row_matrix: [n, r]``, the row's rank rows padded with row 0 up to the batch's
    largest rank ``r``), then two ``bmm``. Prefill rows are few and long, so the copy of
    ``n x r`` rank rows is small next to the ``t``-token products."""
    a = a_rows[row_matrix]  # [n, r, in]
    b = b_rows[row_matrix]  # [n, r, out]
    hidden = torch.bmm(x, a.transpose(1, 2))  # [n, t, r]
    delta = torch.bmm(hidden, b)  # [n, t, out]
    return delta * scale_rows.index_select(0, row_matrix[:, 0]).view(-1, 1, 1)


def rows_reference_lora_delta(
    x: torch.Tensor,
    a_rows: torch.Tensor,
    b_rows: torch.Tensor,
    scale_rows: torch.Tensor,
    rows_of: list[list[int]],
) -> torch.Tensor:
    """The oracle for the rank-row forms: one batch row at a time (``x: [n, t, in]``),
    its adapter rebuilt as plain ``A: [r, in]``, ``B: [out, r]`` and PEFT's formula."""
    out = []
    for i, ids in enumerate(rows_of):
        if not ids:
            out.append(torch.zeros(x.shape[1], b_rows.shape[1], dtype=x.dtype))
            continue
        index = torch.tensor(ids)
        a, b = a_rows[index], b_rows[index].T
        out.append((x[i] @ a.T) @ b.T * scale_rows[ids[0]])
    return torch.stack(out)
