"""The LoRA Land scale scenarios on a GPU, bf16, 7B-class shape, in one command.

    python benchmarks/serving/gpu.py            # from the repo root, with the venv

Skips (exit 0) without CUDA. Builds a randomly initialised Llama with a 7B-class shape
(hidden 4096, 32 layers, 32 heads, MLP 11008, vocab 32000; no weights needed to measure
speed) in bf16 on the GPU, writes random rank-r LoRA adapters on q/k/v/o, and drives
loraland's engine in-process (the same engine, adapter manager and LoRA op the server
runs, without HTTP) with closed-loop users. Side by side, in one run, printed as ratios:

- plain transformers batched ``generate`` (the whole batch at once, no adapters) vs
  loraland with every user on one adapter;
- uniform over 1,000 adapters and Zipf over 1,000 vs one adapter;
- 40 adapters of ranks {4, 8, 16, 64} vs 40 of rank 8;
- cold-load time to first token vs warm;
- inter-token latency p99 while 1,000-token prompts arrive vs without.

The baseline for the ratios, one adapter, is measured first and last (the mean of the
two), after a warm-up point that is not counted. Designed to finish in under 8 minutes
on one H100/H200 (``--duration`` per point, default 12 s). ``--smoke`` runs a tiny shape
on whatever device there is, to check the script.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from workload import TokenWindow  # beside this script

SHAPE_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
}
SHAPE_TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
_ids = itertools.count()


@dataclass
class Point:
    label: str
    tokens_per_s: float = 0.0
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_model(shape: dict[str, int], device: torch.device) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def write_adapter(out: Path, rank: int, shape: dict[str, int]) -> None:
    from safetensors.torch import save_file

    hidden = shape["hidden_size"]
    head_dim = hidden // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    dims = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv)}
    dims["o_proj"] = (hidden, hidden)
    tensors = {}
    for layer in range(shape["num_hidden_layers"]):
        for module, (d_in, d_out) in dims.items():
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, d_in) / d_in**0.5).bfloat16()
            tensors[f"{key}.lora_B.weight"] = (torch.randn(d_out, rank) * 0.02).bfloat16()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank}
    config["target_modules"] = list(TARGETS)  # type: ignore[assignment]
    (out / "adapter_config.json").write_text(json.dumps(config))


def link(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        os.link(source / name, target / name)


def make_adapters(root: Path, shape: dict[str, int], many: int) -> None:
    """1,000 names over 16 weight files (hard links), 40 rank-8, 40 mixed, 8 cold."""
    files = root / ".files"
    for i in range(16):
        write_adapter(files / f"r8-{i}", 8, shape)
    for rank in (4, 16, 64):
        for i in range(4):
            write_adapter(files / f"r{rank}-{i}", rank, shape)
    for i in range(many):
        link(files / f"r8-{i % 16}", root / f"u{i}")
    for i in range(40):
        link(files / f"r8-{i % 16}", root / f"r8-{i}")
        rank = (4, 8, 16, 64)[i % 4]
        link(files / f"r{rank}-{i % 4}", root / f"mixed{i}")
    for i in range(8):
        write_adapter(root / f"cold{i}", 8, shape)


class Harness:
    """loraland's engine and adapter manager, in-process, fed by asyncio users."""

    def __init__(self, model: Any, root: Path) -> None:
        from loraland.serving.config import ServerConfig
        from loraland.serving.engine.batch import ModelRunner
        from loraland.serving.engine.loop import Engine, EngineLimits, TokenizerInfo
        from loraland.serving.lora.bank import LoraSlotBank
        from loraland.serving.lora.loading import BaseModelShape
        from loraland.serving.lora.manager import AdapterManager
        from loraland.serving.memory import read_available
        from loraland.serving.runtime import size_adapter_tiers
        from loraland.serving.telemetry import ServingMetrics
        from loraland.settings import Settings

        config = ServerConfig.build({"base_model": "random://llama-7b-shape"})
        base = BaseModelShape.of(config.base_model, model)
        tiers = size_adapter_tiers(
            config, LoraSlotBank.row_bytes(model), base.device, read_available()
        )
        self.bank = LoraSlotBank(model, slots=tiers.slots, max_bytes=tiers.device_budget)
        self.metrics = ServingMetrics()
        self.adapters = AdapterManager(
            base,
            self.bank,
            Settings.from_env(),
            max_rank=config.max_lora_rank,
            host_capacity=tiers.host_capacity,
            roots=[root],
            metrics=self.metrics,
            host_budget=tiers.host_budget,
            max_lora=tiers.max_lora,
        )
        limits = EngineLimits(
            max_batch_size=config.max_batch_size,
            max_batch_total_tokens=config.batch_token_budget,
            max_batch_prefill_tokens=config.max_batch_prefill_tokens,
            max_concurrent_requests=config.max_concurrent_requests,
            max_queue_length=config.max_queue_length,
            prefill_chunk_tokens=config.prefill_chunk_tokens,
        )
        tokenizer = TokenizerInfo(
            decode=lambda ids: "", special_ids=frozenset(), eos_ids=frozenset(), pad_id=0
        )
        self.engine = Engine(
            ModelRunner(model, self.bank, pad_id=0), self.adapters, tokenizer, limits, self.metrics
        )
        self.engine.start()
        print(
            f"  adapter tiers: {tiers.slots} device slots, {tiers.device_budget} bytes, "
            f"host budget {tiers.host_budget} bytes",
            flush=True,
        )

    def close(self) -> None:
        self.engine.stop()
        self.adapters.close()

    async def request(
        self, adapter: str | None, prompt: list[int], new_tokens: int
    ) -> tuple[float, list[float]]:
        """When one request was sent and when each of its tokens came (monotonic s)."""
        from loraland.serving.engine.request import EngineEvent, GenerationRequest
        from loraland.serving.params import SamplingParams

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        sent = time.monotonic()
        name = None
        if adapter is not None:
            name = self.adapters.lookup(adapter)
            await self.adapters.pin(name)

        def sink(event: EngineEvent) -> None:
            if name is not None and (event.finished is not None or event.error is not None):
                self.adapters.unpin(name)
            loop.call_soon_threadsafe(queue.put_nowait, event)

        self.engine.submit(
            GenerationRequest(
                request_id=f"r{next(_ids)}",
                prompt_ids=prompt,
                params=SamplingParams(max_new_tokens=new_tokens, ignore_eos=True),
                adapter=name,
                sink=sink,
            )
        )
        times = []
        while True:
            event = await queue.get()
            if event.error is not None:
                raise RuntimeError(event.error)
            if event.token is not None:
                times.append(time.monotonic())
            if event.finished is not None:
                break
        return sent, times


async def closed_loop(
    harness: Harness,
    users: int,
    pick: Any,
    prompts: list[list[int]],
    new_tokens: int,
    duration: float,
    warmup: float,
    long_prompt: list[int] | None = None,
    window: str = "",
) -> Point:
    point = Point(window)
    start_at = time.monotonic() + warmup
    end_at = start_at + duration
    counted = TokenWindow(start_at, end_at, point.ttft, point.gaps)

    async def user(seed: int) -> None:
        rng = random.Random(f"{window}/{seed}")
        # Starts spread over the warmup: users that start together stay in step (their
        # requests are the same length), and a window of whole requests then counts
        # waves (the first runs' tokens/s came in steps of 32 requests).
        await asyncio.sleep(warmup * seed / users)
        while time.monotonic() < end_at:
            sent, times = await harness.request(pick(rng), rng.choice(prompts), new_tokens)
            counted.add_request(sent, times)

    async def long_user() -> None:
        assert long_prompt is not None
        while time.monotonic() < end_at:
            await harness.request(None, long_prompt, 1)

    tasks = [asyncio.create_task(user(seed)) for seed in range(users)]
    if long_prompt is not None:
        tasks.append(asyncio.create_task(long_user()))
    await asyncio.wait(tasks, timeout=end_at - time.monotonic() + 60)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    point.tokens_per_s = counted.tokens / duration
    return point


def hf_generate_tokens_per_s(
    model: Any, prompts: list[list[int]], users: int, new_tokens: int, repeats: int
) -> float:
    """Plain transformers: the whole batch of ``users`` prompts in one ``generate``."""
    device = next(model.parameters()).device
    batch = [prompts[i % len(prompts)] for i in range(users)]
    longest = max(len(p) for p in batch)
    ids = torch.zeros(users, longest, dtype=torch.long)
    mask = torch.zeros(users, longest, dtype=torch.long)
    for row, prompt in enumerate(batch):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            begin = time.perf_counter()
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - begin)
    return users * new_tokens / best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--long-prompt-tokens", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="tiny shape, any device")
    args = parser.parse_args()
    began = time.monotonic()
    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device: GPU benchmark skipped")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPE_TINY if args.smoke else SHAPE_7B
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; shape: {shape}", flush=True)
    model = build_model(shape, device)
    print(f"  model built ({time.monotonic() - began:.0f} s)", flush=True)
    rng = random.Random(0)
    vocab = shape["vocab_size"]
    prompts = [[rng.randrange(1, vocab) for _ in range(rng.randrange(16, 40))] for _ in range(8)]
    long_prompt = [rng.randrange(1, vocab) for _ in range(args.long_prompt_tokens)]
    hf = hf_generate_tokens_per_s(model, prompts, args.users, args.new_tokens, repeats=3)
    print(f"  transformers batched generate: {hf:.1f} tok/s", flush=True)

    work = Path(tempfile.mkdtemp(prefix="loraland-gpu-"))
    root = work / "adapters"
    make_adapters(root, shape, args.adapters)
    print(f"  adapters written ({time.monotonic() - began:.0f} s)", flush=True)
    harness = Harness(model, root)
    points: dict[str, Point] = {}
    uniform = [f"u{i}" for i in range(args.adapters)]
    weights = [1.0 / k for k in range(1, args.adapters + 1)]
    eight = uniform[:8]

    def measure(label: str, pick: Any, long: list[int] | None = None) -> None:
        point = asyncio.run(
            closed_loop(
                harness,
                args.users,
                pick,
                prompts,
                args.new_tokens,
                args.duration,
                args.warmup,
                long,
                label,
            )
        )
        points[label] = point
        print(
            f"  {label:<34} {point.tokens_per_s:8.1f} tok/s  ITL p50 {pct(point.gaps, 0.5):.4f}"
            f" p99 {pct(point.gaps, 0.99):.4f} s  ({time.monotonic() - began:.0f} s)",
            flush=True,
        )

    try:
        # Not counted: the first CUDA kernels, cuBLAS handles and allocator pools took
        # over a second of the first point's steps (ITL p99 1.19 s against 0.08 later).
        measure("warm-up, not counted", lambda r: r.choice([f"mixed{i}" for i in range(40)]))
        measure("one adapter", lambda r: "u0")
        measure("uniform over 1000", lambda r: r.choice(uniform))
        measure("Zipf over 1000", lambda r: r.choices(uniform, weights=weights)[0])
        measure("40 adapters, rank 8", lambda r: r.choice([f"r8-{i}" for i in range(40)]))
        measure(
            "40 adapters, ranks 4/8/16/64", lambda r: r.choice([f"mixed{i}" for i in range(40)])
        )
        measure("8 adapters", lambda r: r.choice(eight))
        measure("8 adapters + long prompts", lambda r: r.choice(eight), long_prompt)

        async def cold_warm() -> tuple[list[float], list[float]]:
            cold, warm = [], []
            for i in range(8):
                for into in (cold, warm):
                    sent, times = await harness.request(f"cold{i}", prompts[0], 1)
                    into.append(times[0] - sent)
            return cold, warm

        cold, warm = asyncio.run(cold_warm())
        # One adapter again, last: every ratio's baseline is the mean of both ends.
        measure("one adapter, again", lambda r: "u0")
    finally:
        harness.close()

    one = (points["one adapter"].tokens_per_s + points["one adapter, again"].tokens_per_s) / 2
    print()
    print(f"{args.users} users, {args.new_tokens} new tokens, {args.duration:.0f} s per point")

    def ratio(label: str, value: float, target: str) -> None:
        print(f"  {label:<56} {value:7.2f}x  ({target})")

    ratio("loraland one adapter / transformers batched generate", one / hf, "higher is better")
    ratio(
        "uniform over 1000 / one adapter", points["uniform over 1000"].tokens_per_s / one, ">= 0.8"
    )
    ratio("Zipf over 1000 / one adapter", points["Zipf over 1000"].tokens_per_s / one, ">= 0.9")
    ratio(
        "ranks 4/8/16/64 / all rank 8",
        points["40 adapters, ranks 4/8/16/64"].tokens_per_s
        / points["40 adapters, rank 8"].tokens_per_s,
        ">= 0.9",
    )
    ratio(
        f"cold / warm first token ({statistics.median(cold) * 1000:.0f} / "
        f"{statistics.median(warm) * 1000:.0f} ms)",
        statistics.median(cold) / statistics.median(warm),
        "<= 1.5",
    )
    quiet = pct(points["8 adapters"].gaps, 0.99)
    busy = pct(points["8 adapters + long prompts"].gaps, 0.99)
    ratio(
        f"ITL p99 with / without long prompts ({busy * 1000:.1f} / {quiet * 1000:.1f} ms)",
        busy / quiet,
        "<= 3",
    )
    print(f"total {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook: print(f"thread {hook.thread}: {hook.exc_value}")
    sys.exit(main())
