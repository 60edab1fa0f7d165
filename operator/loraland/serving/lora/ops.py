"""The batched LoRA op: every row of a batch applies its own adapter in one computation.

Slot tensors stack all device-resident adapters of one target module:
``A: [slots, r, in]``, ``B: [slots, out, r]``, ``scale: [slots]``, zero-padded to a common
rank ``r`` (zero rows of A and zero columns of B add exactly nothing). Slot 0 is all
zeros and means "no adapter". For rows ``x: [n, t, in]`` with slot indices ``idx: [n]``:

    delta[i] = (x[i] @ A[idx[i]]^T) @ B[idx[i]]^T * scale[idx[i]]

computed as one gather and two ``bmm`` calls (the order of operations is PEFT's:
``lora_B(lora_A(x)) * scaling``), so a mixed batch costs the same whatever the number
of distinct adapters in it. :func:`reference_lora_delta` is the plain loop the fast
version is tested against.
"""

from __future__ import annotations

import torch


def batched_lora_delta(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: torch.Tensor,
    idx: torch.Tensor,
) -> torch.Tensor:
    """LoRA delta for ``x: [n, t, in]`` with per-row slots ``idx: [n]`` -> ``[n, t, out]``."""
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
    """The same, one row at a time with plain matmuls: the test oracle."""
    rows = []
    for i in range(x.shape[0]):
        slot = int(idx[i])
        rows.append((x[i] @ lora_a[slot].T) @ lora_b[slot].T * scale[slot])
    return torch.stack(rows)
