"""The two decode forms of the LoRA op, timed side by side: where does each win?

The engine picks, per decode step, the stacked form (two dense GEMMs over the rank rows
of the k distinct adapters in the batch: work ~ rows x K, K = sum of their ranks) or the
segmented form (each row's own pages: work ~ C x R, R = sum of the rows' ranks in whole
pages), which on CPU is the native kernel where it builds (loraland/serving/lora/native.py)
and two embedding bags otherwise. This script measures all three on one layer shape
across mixes and prints each segmented form's ratio to stacked next to its cost-model
ratio ``C x R / (rows x K)`` for the constant the engine uses (``SEGMENT_COST`` and
``NATIVE_SEGMENT_COST`` in loraland/serving/lora/layers.py), so the constants can be
checked on a machine: the model should pick the faster form wherever the two differ by
much. The stacked form is timed as the engine runs it, on weights
gathered once while the set of distinct adapters holds; "+gather" adds that gathering,
paid again whenever an adapter joins or leaves the batch.

    python benchmarks/serving/lora_ops.py [--rows 32] [--dim 576] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial

import torch
from loraland.serving.lora.layers import NATIVE_SEGMENT_COST, SEGMENT_COST
from loraland.serving.lora.native import paged_lora_op
from loraland.serving.lora.ops import (
    PAGE,
    a_bag_index,
    add_segmented_lora,
    add_stacked_lora,
    page_rows,
    pages_for,
    stacked_weights,
)
from loraland.settings import Settings


def timed(fn: object, repeats: int) -> float:
    """The fastest of ``repeats`` calls: on a machine other work shares, the minimum is
    the op's own cost, the mean mostly the neighbours'."""
    fn()  # type: ignore[operator]
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - begin)
    return best


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.rows
    mixes = {f"{k} adapters x r8": [8] * k for k in (1, 2, 4, 8, 16, 32)}
    mixes["4 adapters r{4,8,16,64}"] = [4, 8, 16, 64]
    mixes["32 adapters r{4,8,16,64}"] = [4, 8, 16, 64] * 8
    pool = 1 + sum(pages_for(r) for m in mixes.values() for r in m)
    a_pages = torch.randn(pool * args.dim, PAGE)
    b_rows = torch.randn(pool * PAGE, args.out)
    x = torch.randn(n, args.dim)
    y = torch.zeros(n, args.out)
    settings = Settings.from_env()
    native = paged_lora_op(settings.kernels_dir, settings.native_kernels)
    print(
        f"rows={n} in={args.dim} out={args.out} threads={args.threads}  "
        f"C={SEGMENT_COST} (bags), {NATIVE_SEGMENT_COST} (native)"
    )
    print(
        f"{'mix':<26} {'stacked us':>10} {'+gather us':>10} {'bags us':>8} {'measured':>9} "
        f"{'model':>6} {'native us':>9} {'measured':>9} {'model':>6}"
    )
    next_page = 1
    for label, ranks in mixes.items():
        adapters = []
        for rank in ranks:
            adapters.append(list(range(next_page, next_page + pages_for(rank))))
            next_page += pages_for(rank)
        of_row = [adapters[i % len(adapters)] for i in range(n)]
        pages = torch.tensor([p for own in of_row for p in own])
        every_owner = torch.tensor([i for i, own in enumerate(of_row) for _ in own])
        owner = every_owner if any(len(own) != 1 for own in of_row) else None
        offsets = torch.tensor([0, *itertools.accumulate(PAGE * len(own) for own in of_row)][:-1])
        a_index, a_offsets = a_bag_index(pages, args.dim)
        active = torch.tensor([p for own in adapters for p in own])
        member = None
        if len(adapters) > 1:
            member = torch.zeros(n, PAGE * active.shape[0])
            column = 0
            for j, own in enumerate(adapters):
                for i in range(n):
                    if i % len(adapters) == j:
                        member[i, column : column + PAGE * len(own)] = 1
                column += PAGE * len(own)
        a, b = stacked_weights(a_pages, b_rows, active)

        bags = (a_pages, b_rows, owner, a_index, a_offsets, page_rows(pages), offsets)
        torch.testing.assert_close(
            add_stacked_lora(torch.zeros_like(y), x, a, b, member),
            add_segmented_lora(torch.zeros_like(y), x, *bags),
            rtol=1e-4,
            atol=1e-3,
        )
        # Both add into y, as in the engine (the sums grow; the timing does not care).
        stacked = partial(add_stacked_lora, y, x, a, b, member)
        segmented = partial(add_segmented_lora, y, x, *bags)
        t_stacked = timed(stacked, args.repeats)
        t_gather = timed(
            partial(gather_then_stacked, y, x, a_pages, b_rows, active, member), args.repeats
        )
        t_segmented = timed(segmented, args.repeats)
        work = pages.shape[0] / (n * active.shape[0])
        line = (
            f"{label:<26} {t_stacked * 1e6:>10.1f} {t_gather * 1e6:>10.1f} "
            f"{t_segmented * 1e6:>8.1f} {t_segmented / t_stacked:>9.2f} "
            f"{SEGMENT_COST * work:>6.2f}"
        )
        if native is not None:
            torch.testing.assert_close(
                native(torch.zeros_like(y), x, a_pages, b_rows, pages, every_owner),
                add_segmented_lora(torch.zeros_like(y), x, *bags),
                rtol=1e-4,
                atol=1e-3,
            )
            t_native = timed(
                partial(native, y, x, a_pages, b_rows, pages, every_owner), args.repeats
            )
            line += (
                f" {t_native * 1e6:>9.1f} {t_native / t_stacked:>9.2f} "
                f"{NATIVE_SEGMENT_COST * work:>6.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
