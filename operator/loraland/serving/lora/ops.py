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
