"""What the LoRA op costs a whole decode step of the embedded model, by adapter mix and by
where the adapters' pages sit in the pools.

``lora_ops.py`` times one layer on weights that stay in cache; a server holding hundreds
of adapters reads them from memory. This script runs the native CPU kernel the way a
decode step does: every wrapped module of the embedded model (q/k/v/o of each layer),
each with its own pool of ``--adapters`` pages (so no cache holds them), one token for
each of ``--rows`` rows, and prints the median step time of each mix side by side,
alternated over ``--rounds``:

- rank 8: all rows on one adapter, a Zipf(1.0) draw over 1,000 adapters (the draws past
  the pool wrap into it), every row on its own adapter;
- with ``--mixed``, ``scale.py``'s mixed-ranks point: rows drawing from 40 adapters of
  ranks 4/8/16/64 (1, 1, 2 and 8 pages), their pages scattered over the pool (what a
  full pool gave before :mod:`loraland.serving.lora.pages`) or each adapter's pages one
  run, against 40 rank-8 adapters (the same draws for all three).

Compare the mixes' difference with a server step (``scale.py`` prints inter-token
latency) to see what share of the many-adapter cost is the op itself.

    python benchmarks/serving/lora_step.py [--rows 32] [--adapters 500] [--threads 2] [--mixed]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from loraland.serving.lora.native import PagedLoraOp, paged_lora_op
from loraland.serving.lora.ops import PAGE
from loraland.settings import Settings
from loraland.storage import resolve
from scale import BASE_URI, lora_module_shapes, zipf_weights  # beside this script

#: Pages of scale.py's mixed-rank adapters (ranks 4, 8, 16, 64), one of each in turn.
MIXED_PAGES = (1, 1, 2, 8)


def placements(adapters: int, pool_pages: int, rng: random.Random) -> dict[str, list[list[int]]]:
    """Pages of ``adapters`` mixed-rank adapters scattered, in runs, and of as many rank-8
    ones, all within a pool of ``pool_pages`` (page 0 excluded, as in the server)."""
    counts = [MIXED_PAGES[i % len(MIXED_PAGES)] for i in range(adapters)]
    free = rng.sample(range(1, pool_pages), sum(counts))
    scattered = [[free.pop() for _ in range(count)] for count in counts]
    blocks = rng.sample(range((pool_pages - 1) // max(MIXED_PAGES)), adapters)
    runs = [
        [1 + block * max(MIXED_PAGES) + k for k in range(count)]
        for block, count in zip(blocks, counts, strict=True)
    ]
    return {
        "ranks 4-64, scattered": scattered,
        "ranks 4-64, runs": runs,
        "all rank 8": [[page] for page in rng.sample(range(1, pool_pages), adapters)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=500, help="pages per pool")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mix and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mixed", action="store_true", help="the mixed-rank placements too")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    settings = Settings.from_env()
    op = paged_lora_op(settings.kernels_dir, settings.native_kernels)
    if op is None:
        raise SystemExit("the native LoRA kernel did not build here (see the log above)")
    layers, shapes = lora_module_shapes(resolve(BASE_URI, settings))
    modules = [shape for _ in range(layers) for shape in shapes.values()]
    pools = [
        (torch.randn(args.adapters * d_in, PAGE) * 0.01, torch.randn(args.adapters * PAGE, d_out))
        for d_in, d_out in modules
    ]
    pool_mb = sum(a.numel() + b.numel() for a, b in pools) * 4 / 2**20
    rng = random.Random(0)
    weights = zipf_weights(1000, 1.0)
    single = [[page] for page in range(args.adapters)]
    # Each mix: the pages of its adapters, and a draw of one adapter per row.
    mixes: dict[str, tuple[list[list[int]], Callable[[random.Random], list[int]]]] = {
        "one adapter": (single, lambda r: [0] * args.rows),
        "Zipf over 1000": (
            single,
            lambda r: [
                k % args.adapters for k in r.choices(range(1000), weights=weights, k=args.rows)
            ],
        ),
        "each row its own": (single, lambda r: r.sample(range(args.adapters), args.rows)),
    }
    if args.mixed:
        for name, pages_of in placements(40, args.adapters, rng).items():
            mixes[name] = (pages_of, lambda r: [r.randrange(40) for _ in range(args.rows)])
    print(
        f"{len(modules)} modules, pools of {args.adapters} pages ({pool_mb:.0f} MB, "
        f"{pool_mb / args.adapters:.2f} MB a page), {args.rows} rows, {args.threads} threads",
        flush=True,
    )
    for pages_of, draw in mixes.values():  # untimed: threads, caches and clocks settle
        step_seconds(op, pools, modules, [pages_of[c] for c in draw(rng)])
    medians: dict[str, list[float]] = {name: [] for name in mixes}
    distinct: dict[str, list[int]] = {name: [] for name in mixes}
    for round_ in range(args.rounds):
        for name, (pages_of, draw) in mixes.items():
            draws = random.Random(round_)  # the same rows for every mix of a round
            times = []
            for _ in range(args.steps):
                chosen = draw(draws)
                distinct[name].append(len(set(chosen)))
                times.append(step_seconds(op, pools, modules, [pages_of[c] for c in chosen]))
            medians[name].append(statistics.median(times))
    one = statistics.median(medians["one adapter"])
    for name in mixes:
        step = statistics.median(medians[name])
        print(
            f"  {name:<22} {step * 1000:6.2f} ms a step ({one and step / one:5.2f}x one adapter)"
            f"  {statistics.mean(distinct[name]):4.1f} distinct adapters"
            f"  rounds: {', '.join(f'{m * 1000:.2f}' for m in medians[name])}"
        )


def step_seconds(
    op: PagedLoraOp,
    pools: list[tuple[torch.Tensor, torch.Tensor]],
    modules: list[tuple[int, int]],
    rows: list[list[int]],
) -> float:
    """One decode step's LoRA ops for ``rows`` (each row's pages), timed."""
    pages = torch.tensor([p for own in rows for p in own], dtype=torch.long)
    owner = torch.tensor([i for i, own in enumerate(rows) for _ in own], dtype=torch.long)
    xs = {d_in: torch.randn(len(rows), d_in) for d_in, _ in modules}
    ys = {d_out: torch.zeros(len(rows), d_out) for _, d_out in modules}
    begin = time.perf_counter()
    for (a, b), (d_in, d_out) in zip(pools, modules, strict=True):
        op(ys[d_out], xs[d_in], a, b, pages, owner)
    return time.perf_counter() - begin


if __name__ == "__main__":
    main()
