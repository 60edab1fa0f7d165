"""loraland serve vs the naive transformers + peft server, side by side in one run.

Closed-loop users (each sends a request, waits for the whole streamed answer, sends the
next) against (a) ``loraland serve`` and (b) ``naive_server.py`` (one request at a time,
``set_adapter`` then ``generate``), on the embedded model with 8 LoRA adapters. Each
request picks an adapter round-robin, asks for ``--new-tokens`` tokens (EOS ignored, so
every answer has the same length) and streams them. For each user count it prints
output tokens/s, time to first token p50/p95 and total request time p50/p95, then the
ratios the design targets:

- at the most users, (a) tokens/s >= 8x (b);
- with 8 adapters, (a) keeps >= 85% of its own tokens/s with a single adapter;
- at 1 user, (a) TTFT <= 1.5x one bare forward pass over the same prompt.

Both servers run at once (an idle one costs nothing) and every user count is measured on
(a) then (b) back to back, so load from other work on the machine hits both alike.
Nothing here is asserted; the numbers depend on the machine. On a machine other jobs
share, pass ``--threads 1``: OpenMP threads that wait for a descheduled sibling make
every forward pass many times slower, for both servers.

    LORALAND_CACHE=... python benchmarks/serving/bench.py [--users 1 8 32] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from loraland.serving.process import free_port, stop, wait_until_healthy
from loraland.serving.torch_defaults import serve_defaults
from workload import BASE_URI, PROMPTS, tgi_body, token_times  # beside this script

HERE = Path(__file__).resolve().parent


@dataclass
class Point:
    label: str
    users: int
    tokens_per_s: float
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_adapters(base_dir: Path, out: Path, count: int) -> dict[str, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    paths = {}
    for i in range(count):
        torch.manual_seed(i)
        config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
        )
        peft_model = get_peft_model(model, config)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        peft_model.save_pretrained(out / f"adapter{i}")
        model = peft_model.unload()
        paths[f"adapter{i}"] = out / f"adapter{i}"
    return paths


def start(name: str, cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    wait_until_healthy(f"http://127.0.0.1:{port}", process, log, 180, name=name)
    return process


async def closed_loop(
    url: str, users: int, adapters: list[str], new_tokens: int, duration: float, warmup: float
) -> Point:
    arrivals: list[float] = []
    ttft: list[float] = []
    total: list[float] = []
    start_at = time.monotonic() + warmup
    end_at = start_at + duration
    counter = 0

    async def one_request(client: httpx.AsyncClient) -> None:
        nonlocal counter
        counter += 1
        body = tgi_body(
            PROMPTS[counter % len(PROMPTS)], new_tokens, adapters[counter % len(adapters)]
        )
        sent = time.monotonic()
        first = None
        async for now in token_times(client, url, body):
            first = first or now
            arrivals.append(now)
        done = time.monotonic()
        # Latencies of the requests that complete inside the window (in steady state).
        if start_at <= done <= end_at and first is not None:
            ttft.append(first - sent)
            total.append(done - sent)

    async def user(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end_at:
            await one_request(client)

    limits = httpx.Limits(max_connections=users + 4)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(user(client)) for _ in range(users)]
        # At the end of the window, requests still running are abandoned (disconnected).
        await asyncio.wait(tasks, timeout=end_at - time.monotonic())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    in_window = sum(1 for t in arrivals if start_at <= t <= end_at)
    return Point("", users, in_window / duration, ttft, total)


def bare_forward_ms(base_dir: Path, prompts: list[str], repeats: int = 5) -> float:
    """Median time of one plain ``model(input_ids)`` over the benchmark prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    times = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            model(ids)  # warm
            for _ in range(repeats):
                begin = time.perf_counter()
                model(ids)
                times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both servers and the bare forward pass (default: torch's)",
    )
    args = parser.parse_args()
    # Both servers run torch as loraland serve does (a short spin, then passive waits at
    # OpenMP barriers; huge pages: serving/torch_defaults.py): the naive server would
    # spin long.
    os.environ.update(serve_defaults(os.environ))

    from loraland.settings import Settings
    from loraland.storage import resolve

    base_dir = resolve(BASE_URI, Settings.from_env())
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="loraland-bench-"))
    adapters = make_adapters(base_dir, work / "adapters", args.adapters)
    names = list(adapters)
    most = max(args.users)
    points: list[Point] = []

    def measure(label: str, url: str, users: int, use: list[str]) -> None:
        point = asyncio.run(
            closed_loop(url, users, use, args.new_tokens, args.duration, args.warmup)
        )
        point.label = label
        points.append(point)
        print(f"  {label:<28} users={users:<3} {point.tokens_per_s:7.1f} tok/s", flush=True)

    bare_runs: list[float] = []

    port = free_port()
    config = {
        "base_model": BASE_URI,
        "precision": "fp32",
        "host": "127.0.0.1",
        "port": port,
        "adapters": [{"name": n, "uri": str(p)} for n, p in adapters.items()],
        "max_loaded_adapters": args.adapters,
        "max_batch_size": max(most, 1),
        "threads": args.threads,
    }
    config_file = work / "serve.json"
    config_file.write_text(json.dumps(config))
    naive_port = free_port()
    naive_cmd = [sys.executable, str(HERE / "naive_server.py"), "--base-dir", str(base_dir)]
    naive_cmd += ["--port", str(naive_port)]
    naive_cmd += [f"--adapter={n}={p}" for n, p in adapters.items()]
    if args.threads:
        naive_cmd += ["--threads", str(args.threads)]
    serve_cmd = [sys.executable, "-m", "loraland.cli", "serve", "--config", str(config_file)]
    # Both servers stay up (an idle one uses no CPU) and each user count is measured on
    # (a) then (b) back to back, so whatever else runs on the machine hits both alike.
    server = start("loraland serve", serve_cmd, port, work / "serve.log")
    try:
        naive = start("naive server", naive_cmd, naive_port, work / "naive.log")
        try:
            url = f"http://127.0.0.1:{port}"
            naive_url = f"http://127.0.0.1:{naive_port}"
            time.sleep(2)  # adapters finish loading
            for users in args.users:
                if users == min(args.users):
                    # The same prompts through a bare forward pass, right before and
                    # after, since other work on the machine shifts every timing.
                    bare_runs.append(bare_forward_ms(base_dir, PROMPTS))
                measure(f"loraland, {len(names)} adapters", url, users, names)
                if users == min(args.users):
                    bare_runs.append(bare_forward_ms(base_dir, PROMPTS))
                measure(f"naive, {len(names)} adapters", naive_url, users, names)
            measure("loraland, 1 adapter", url, most, names[:1])
            measure(f"loraland, {len(names)} adapters", url, most, names)
        finally:
            stop(naive)
    finally:
        stop(server)

    print()
    cpus = os.cpu_count()
    threads = args.threads or "default"
    print(
        f"{args.new_tokens} new tokens per request, {args.duration:.0f} s per point, "
        f"{cpus} CPUs, torch threads: {threads}"
    )
    columns = ["server".ljust(28), "users", "tokens/s", "TTFT p50", "TTFT p95"]
    columns += ["total p50", "total p95", "requests"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    for p in points:
        cells = [
            f"{p.label:<28}",
            f"{p.users:>5}",
            f"{p.tokens_per_s:>8.1f}",
            f"{p.pct(p.ttft, 0.5):>8.3f}",
            f"{p.pct(p.ttft, 0.95):>8.3f}",
            f"{p.pct(p.total, 0.5):>9.3f}",
            f"{p.pct(p.total, 0.95):>9.3f}",
            f"{len(p.total):>8}",
        ]
        print("| " + " | ".join(cells) + " |")

    def find(label_start: str, users: int) -> Point:
        return next(p for p in points if p.label.startswith(label_start) and p.users == users)

    # The single-adapter point is compared with the mean of the two 8-adapter points that
    # bracket it (A-B-A): 30 s windows on a small machine drift by several percent, and
    # the bracket cancels a drift that is linear in time.
    multi = [
        p.tokens_per_s
        for p in points
        if p.label.startswith(f"loraland, {len(names)}") and p.users == most
    ]
    single = find("loraland, 1 adapter", most)
    naive_most = find("naive", most)
    multi_vs_naive = find(f"loraland, {len(names)}", most)
    one_user = find(f"loraland, {len(names)}", min(args.users))
    speedup = multi_vs_naive.tokens_per_s / max(naive_most.tokens_per_s, 1e-9)
    kept = statistics.mean(multi) / max(single.tokens_per_s, 1e-9)
    bare = statistics.mean(bare_runs)
    ttft = one_user.pct(one_user.ttft, 0.5) * 1000
    print()
    print(f"(a)/(b) tokens/s at {most} users: {speedup:.1f}x (target >= 8x)")
    print(
        f"(a) {len(names)} adapters vs 1 adapter at {most} users: {kept:.0%} (target >= 85%; "
        f"{len(names)}-adapter runs before and after: "
        + ", ".join(f"{t:.1f}" for t in multi)
        + " tok/s)"
    )
    print(
        f"(a) TTFT p50 at {min(args.users)} user: {ttft:.0f} ms; bare forward pass: {bare:.0f} ms; "
        f"ratio {ttft / bare:.2f} (target <= 1.5)"
    )
    print(f"logs and adapters: {work}")


if __name__ == "__main__":
    main()
