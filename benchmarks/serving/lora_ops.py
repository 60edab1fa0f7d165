"""The two decode forms of the LoRA op, timed side by side: where does each win?

The engine picks, per decode step, the stacked form (two dense GEMMs over the rank rows
of the k distinct adapters in the batch: work ~ rows x K, K = sum of their ranks) or the
segmented form (each row's own rank rows gathered: work ~ C x R, R = sum of the rows'
ranks). This script measures both on one layer shape across mixes and prints the ratio
``segmented / stacked`` next to the cost-model ratio ``C x R / (rows x K)`` for the
constant the engine uses (``SEGMENT_COST`` in loraland/serving/lora/layers.py), so the
constant can be checked on a machine: the model should pick the faster form wherever
the two differ by much.

    python benchmarks/serving/lora_ops.py [--rows 32] [--dim 576] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial

import torch
from loraland.serving.lora.layers import SEGMENT_COST
from loraland.serving.lora.ops import segmented_lora_delta, stacked_rows_lora_delta


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
    pool = 1 + sum(sum(m) for m in mixes.values())
    a_rows = torch.randn(pool, args.dim)
    b_rows = torch.randn(pool, args.out)
    scale_rows = torch.rand(pool)
    x = torch.randn(n, args.dim)
    print(f"rows={n} in={args.dim} out={args.out} threads={args.threads}  C={SEGMENT_COST}")
    print(f"{'mix':<26} {'stacked us':>10} {'segmented us':>12} {'measured':>9} {'model':>7}")
    next_row = 1
    # The largest mix once, untimed, first: the process's first big temporaries are slow
    # to allocate (fresh pages), which a long-running server has long paid for.
    warm_ids = torch.arange(1, pool).remainder(pool - 1) + 1
    for _ in range(20):
        (x.repeat(pool // n + 1, 1)[: pool - 1] * a_rows.index_select(0, warm_ids)).sum(-1)
    for label, ranks in mixes.items():
        adapters = []
        for rank in ranks:
            adapters.append(list(range(next_row, next_row + rank)))
            next_row += rank
        of_row = [adapters[i % len(adapters)] for i in range(n)]
        row_ids = torch.tensor([r for rows in of_row for r in rows])
        owner = torch.tensor([i for i, rows in enumerate(of_row) for _ in rows])
        first = torch.tensor([rows[0] for rows in of_row])
        offsets = torch.tensor([0, *itertools.accumulate(len(rows) for rows in of_row)][:-1])
        active = torch.tensor([r for rows in adapters for r in rows])
        member = torch.zeros(n, active.shape[0])
        column = 0
        for j, rows in enumerate(adapters):
            for i in range(n):
                if i % len(adapters) == j:
                    member[i, column : column + len(rows)] = 1
            column += len(rows)

        stacked = partial(
            stacked_rows_lora_delta, x, a_rows, b_rows, scale_rows, active, member, first
        )
        segmented = partial(
            segmented_lora_delta, x, a_rows, b_rows, scale_rows, row_ids, owner, offsets, first
        )

        torch.testing.assert_close(stacked(), segmented(), rtol=1e-4, atol=1e-3)
        t_stacked = timed(stacked, args.repeats)
        t_segmented = timed(segmented, args.repeats)
        model = SEGMENT_COST * row_ids.shape[0] / (n * active.shape[0])
        print(
            f"{label:<26} {t_stacked * 1e6:>10.1f} {t_segmented * 1e6:>12.1f} "
            f"{t_segmented / t_stacked:>9.2f} {model:>7.2f}"
        )


if __name__ == "__main__":
    main()
