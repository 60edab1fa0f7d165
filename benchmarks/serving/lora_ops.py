"""The two decode forms of the LoRA op, timed side by side: where does each win?

The engine picks, per decode step, the stacked form (two dense GEMMs over the rank rows
of the k distinct adapters in the batch: work ~ rows x K, K = sum of their ranks) or the
segmented form (each row's own pages: work ~ C x R, R = sum of the rows' ranks in whole
pages), which on CPU is the native kernel where it builds (loraland/serving/lora/native.py)
and two embedding bags otherwise, and on a GPU each row's pages gathered for two ``bmm``
per group of rows with as many pages. This script measures them on one layer shape
across mixes and prints each segmented form's ratio to stacked next to its cost-model
ratio ``C x R / (rows x K)`` for the constant the engine uses (``SEGMENT_COST``,
``GATHERED_SEGMENT_COST`` and ``NATIVE_SEGMENT_COST`` in loraland/serving/lora/layers.py),
so the constants can be checked on a machine: the model should pick the faster form
wherever the two differ by much. The stacked form is timed as the engine runs it, on weights
gathered once while the set of distinct adapters holds; "+gather" adds that gathering,
paid again whenever an adapter joins or leaves the batch.

    python benchmarks/serving/lora_ops.py [--rows 32] [--dim 576] [--threads 1]
    python benchmarks/serving/lora_ops.py --device cuda --dtype bfloat16 --dim 4096 --out 4096
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from functools import partial

import torch
from loraland.serving.lora.bank import (
    GATHERED_SEGMENT_COST,
    NATIVE_SEGMENT_COST,
    SEGMENT_COST,
)
from loraland.serving.lora.native import paged_lora_op
from loraland.serving.lora.ops import (
    PAGE,
    a_bag_index,
    add_gathered_lora,
    add_segmented_lora,
    add_stacked_lora,
    gathered_groups,
    page_rows,
    pages_for,
    stacked_weights,
)
from loraland.settings import Settings


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The fastest of ``repeats`` calls: on a machine other work shares, the minimum is
    the op's own cost, the mean mostly the neighbours'. On a GPU each call is waited
    for, so launches and kernels both count, as they do in a decode step."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        begin = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - begin)
    return best


def add_gathered_decode(
    y: torch.Tensor,
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    groups: list[tuple[torch.Tensor | None, torch.Tensor]],
) -> torch.Tensor:
    """The GPU's segmented decode form: a one-token prefill per group of rows."""
    y3, x3 = y.unsqueeze(1), x.unsqueeze(1)
    for rows, pages in groups:
        add_gathered_lora(y3, x3, a_pages, b_rows, pages, rows)
    return y


def gather_then_stacked(
    y: torch.Tensor,
    x: torch.Tensor,
    a_pages: torch.Tensor,
    b_rows: torch.Tensor,
    active: torch.Tensor,
    member: torch.Tensor | None,
) -> torch.Tensor:
    """The stacked form in a step whose set of distinct adapters just changed."""
    a, b = stacked_weights(a_pages, b_rows, active)
    return add_stacked_lora(y, x, a, b, member)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--out", type=int, default=576)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    on_cpu = device.type == "cpu"
    close = {"rtol": 1e-4, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-1}
    n = args.rows
    mixes = {f"{k} adapters x r8": [8] * k for k in (1, 2, 4, 8, 16, 32)}
    mixes["4 adapters r{4,8,16,64}"] = [4, 8, 16, 64]
    mixes["32 adapters r{4,8,16,64}"] = [4, 8, 16, 64] * 8
    pool = 1 + sum(pages_for(r) for m in mixes.values() for r in m)
    torch.manual_seed(0)
    a_pages = (torch.randn(pool * args.dim, PAGE) / args.dim**0.5).to(device, dtype)
    b_rows = torch.randn(pool * PAGE, args.out).to(device, dtype)
    x = torch.randn(n, args.dim).to(device, dtype)
    y = torch.zeros(n, args.out, device=device, dtype=dtype)
    settings = Settings.from_env()
    native = None
    if on_cpu and dtype == torch.float32:
        native = paged_lora_op(settings.kernels_dir, settings.native_kernels)
    segmented_label = "bags" if on_cpu else "gathered"
    segment_cost = SEGMENT_COST if on_cpu else GATHERED_SEGMENT_COST
    print(
        f"rows={n} in={args.dim} out={args.out} {device} {args.dtype} threads={args.threads}"
        f"  C={segment_cost} ({segmented_label}), {NATIVE_SEGMENT_COST} (native)"
    )
    print(
        f"{'mix':<26} {'stacked us':>10} {'+gather us':>10} {segmented_label + ' us':>11} "
        f"{'measured':>9} {'model':>6} {'native us':>9} {'measured':>9} {'model':>6}"
    )
    next_page = 1
    for label, ranks in mixes.items():
        adapters = []
        for rank in ranks:
            adapters.append(list(range(next_page, next_page + pages_for(rank))))
            next_page += pages_for(rank)
        of_row = [adapters[i % len(adapters)] for i in range(n)]

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        pages = tensor([p for own in of_row for p in own])
        every_owner = tensor([i for i, own in enumerate(of_row) for _ in own])
        owner = every_owner if any(len(own) != 1 for own in of_row) else None
        offsets = tensor([0, *itertools.accumulate(PAGE * len(own) for own in of_row)][:-1])
        a_index, a_offsets = a_bag_index(pages, args.dim)
        active = tensor([p for own in adapters for p in own])
        member = None
        if len(adapters) > 1:
            member = torch.zeros(n, PAGE * active.shape[0])
            column = 0
            for j, own in enumerate(adapters):
                for i in range(n):
                    if i % len(adapters) == j:
                        member[i, column : column + PAGE * len(own)] = 1
                column += PAGE * len(own)
            member = member.to(device, dtype)
        a, b = stacked_weights(a_pages, b_rows, active)
        groups = gathered_groups(of_row, device)

        bags = (a_pages, b_rows, owner, a_index, a_offsets, page_rows(pages), offsets)
        expected = add_stacked_lora(torch.zeros_like(y), x, a, b, member)
        if on_cpu:
            segmented = partial(add_segmented_lora, y, x, *bags)
            torch.testing.assert_close(
                add_segmented_lora(torch.zeros_like(y), x, *bags), expected, **close
            )
        else:
            segmented = partial(add_gathered_decode, y, x, a_pages, b_rows, groups)
            torch.testing.assert_close(
                add_gathered_decode(torch.zeros_like(y), x, a_pages, b_rows, groups),
                expected,
                **close,
            )
        # Every form adds into y, as in the engine (the sums grow; the timing does not care).
        stacked = partial(add_stacked_lora, y, x, a, b, member)
        t_stacked = timed(stacked, args.repeats, device)
        t_gather = timed(
            partial(gather_then_stacked, y, x, a_pages, b_rows, active, member),
            args.repeats,
            device,
        )
        t_segmented = timed(segmented, args.repeats, device)
        work = pages.shape[0] / (n * active.shape[0])
        line = (
            f"{label:<26} {t_stacked * 1e6:>10.1f} {t_gather * 1e6:>10.1f} "
            f"{t_segmented * 1e6:>11.1f} {t_segmented / t_stacked:>9.2f} "
            f"{segment_cost * work:>6.2f}"
        )
        if native is not None:
            torch.testing.assert_close(
                native(torch.zeros_like(y), x, a_pages, b_rows, pages, every_owner),
                expected,
                **close,
            )
            t_native = timed(
                partial(native, y, x, a_pages, b_rows, pages, every_owner), args.repeats, device
            )
            line += (
                f" {t_native * 1e6:>9.1f} {t_native / t_stacked:>9.2f} "
                f"{NATIVE_SEGMENT_COST * work:>6.2f}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
