"""What the LoRA op costs a whole decode step of the embedded model, by adapter mix.

``lora_ops.py`` times one layer on weights that stay in cache; a server holding hundreds
of adapters reads them from memory. This script runs the native CPU kernel the way a
decode step does: every wrapped module of the embedded model (q/k/v/o of each layer),
each with its own pool of ``--adapters`` rank-8 adapters (so no cache holds them), one
token for each of ``--rows`` rows, and prints the median step time for three mixes side
by side, alternated over ``--rounds``: all rows on one adapter, a Zipf(1.0) draw over
1,000 adapters (the draws past the pool wrap into it), and every row on its own adapter.
Compare the mixes' difference with a server step (``scale.py`` prints inter-token
latency) to see what share of the many-adapter cost is the op itself.

    python benchmarks/serving/lora_step.py [--rows 32] [--adapters 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from loraland.serving.lora.native import paged_lora_op
from loraland.serving.lora.ops import PAGE
from loraland.settings import Settings
from loraland.storage import resolve
from scale import BASE_URI, lora_module_shapes, zipf_weights  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=500, help="rank-8 adapters per pool")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mix and round")
    parser.add_argument("--rounds", type=int, default=3)
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
    adapter_mb = pool_mb / args.adapters
    xs = {d_in: torch.randn(args.rows, d_in) for d_in, _ in modules}
    ys = {d_out: torch.zeros(args.rows, d_out) for _, d_out in modules}
    owner = torch.arange(args.rows, dtype=torch.long)
    rng = random.Random(0)
    weights = zipf_weights(1000, 1.0)
    mixes: dict[str, Callable[[], list[int]]] = {
        "one adapter": lambda: [0] * args.rows,
        "Zipf over 1000": lambda: [
            k % args.adapters for k in rng.choices(range(1000), weights=weights, k=args.rows)
        ],
        "each row its own": lambda: rng.sample(range(args.adapters), args.rows),
    }
    print(
        f"{len(modules)} modules, pools of {args.adapters} rank-8 adapters ({pool_mb:.0f} MB, "
        f"{adapter_mb:.2f} MB an adapter), {args.rows} rows, {args.threads} threads",
        flush=True,
    )
    medians: dict[str, list[float]] = {name: [] for name in mixes}
    distinct: dict[str, list[int]] = {name: [] for name in mixes}
    for _ in range(args.rounds):
        for name, mix in mixes.items():
            times = []
            for _ in range(args.steps):
                chosen = mix()
                distinct[name].append(len(set(chosen)))
                pages = torch.tensor(chosen, dtype=torch.long)
                begin = time.perf_counter()
                for (a, b), (d_in, d_out) in zip(pools, modules, strict=True):
                    op(ys[d_out], xs[d_in], a, b, pages, owner)
                times.append(time.perf_counter() - begin)
            medians[name].append(statistics.median(times))
    one = statistics.median(medians["one adapter"])
    for name in mixes:
        step = statistics.median(medians[name])
        print(
            f"  {name:<18} {step * 1000:6.2f} ms a step ({one and step / one:5.2f}x one adapter)"
            f"  {statistics.mean(distinct[name]):4.1f} distinct adapters"
            f"  rounds: {', '.join(f'{m * 1000:.2f}' for m in medians[name])}"
        )


if __name__ == "__main__":
    main()
