"""Loading an adapter never stalls decoding: a request on adapter A keeps getting
tokens while adapter B loads (held in its loader until A has streamed, so the test
asserts the order of events, not timings)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from loraland.serving.engine.batch import ModelRunner
from loraland.serving.engine.loop import Engine, EngineLimits, TokenizerInfo
from loraland.serving.engine.request import EngineEvent, GenerationRequest
from loraland.serving.lora.bank import LoraSlotBank, adapter_device_bytes
from loraland.serving.lora.loading import BaseModelShape, LoadedAdapter, load_adapter
from loraland.serving.lora.manager import AdapterManager
from loraland.serving.params import SamplingParams
from loraland.serving.telemetry import ServingMetrics
from loraland.settings import Settings
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import save_file


def write_adapter(path: Path, model: torch.nn.Module, seed: int) -> Path:
    """A random rank-4 PEFT adapter on every layer's q_proj and v_proj of ``model``."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "v_proj")) and isinstance(module, torch.nn.Linear):
            prefix = f"base_model.model.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(
                4, module.in_features, generator=generator
            )
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(
                module.out_features, 4, generator=generator
            )
    path.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    (path / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


def tiny_manager(
    model: torch.nn.Module, bank: LoraSlotBank, metrics: ServingMetrics, **options: Any
) -> AdapterManager:
    """A manager of rank-8-at-most adapters for ``model``, no adapter roots."""
    return AdapterManager(
        BaseModelShape.of("builtin://tiny", model),
        bank,
        Settings.from_env(),
        max_rank=8,
        roots=[],
        metrics=metrics,
        **options,
    )


@pytest.mark.timeout(600)  # importing transformers is slow on a busy machine
def test_a_request_keeps_streaming_while_another_adapter_loads(
    tiny_llama: torch.nn.Module, tmp_path: Path, counting_tokenizer: TokenizerInfo
) -> None:
    model = tiny_llama
    bank = LoraSlotBank(model, slots=4)
    events: list[str] = []
    b_started, b_release = threading.Event(), threading.Event()

    def loader(name: str, path: Path, base: BaseModelShape, max_rank: int) -> LoadedAdapter:
        if name != "b":
            return load_adapter(name, path, base, max_rank)
        events.append("b-load-start")
        b_started.set()
        # A slow load: it ends only once the test has seen A stream meanwhile (or gives
        # up, and the assertions below fail).
        b_release.wait(120)
        adapter = load_adapter(name, path, base, max_rank)
        events.append("b-load-end")
        return adapter

    metrics = ServingMetrics()
    manager = tiny_manager(model, bank, metrics, host_capacity=8, loader=loader)
    limits = EngineLimits(
        max_batch_size=8,
        max_batch_total_tokens=4096,
        max_batch_prefill_tokens=4096,
        max_concurrent_requests=8,
        max_queue_length=8,
    )
    engine = Engine(
        ModelRunner(model, bank, pad_id=0), manager, counting_tokenizer, limits, metrics
    )
    streamed = threading.Condition()
    tokens: dict[str, int] = {"a": 0, "b": 0}
    done = {"a": threading.Event(), "b": threading.Event()}
    errors: list[str] = []

    def sink_for(name: str):  # type: ignore[no-untyped-def]
        def sink(event: EngineEvent) -> None:
            with streamed:
                if event.token is not None:
                    tokens[name] += 1
                    events.append(f"{name}-token")
                if event.error is not None:
                    errors.append(event.error)
                streamed.notify_all()
            if event.finished is not None or event.error is not None:
                done[name].set()

        return sink

    def submit(name: str, new_tokens: int) -> None:
        params = SamplingParams(max_new_tokens=new_tokens)
        engine.submit(GenerationRequest(name, [3, 9, 27, 17], params, name, sink_for(name)))

    manager.add("a", str(write_adapter(tmp_path / "a", model, seed=1)), origin="config").result(60)
    b_path = write_adapter(tmp_path / "b", model, seed=2)
    engine.start()
    try:
        b_loaded = manager.add("b", str(b_path), origin="config")
        assert b_started.wait(60)
        submit("a", 40)
        with streamed:
            assert streamed.wait_for(lambda: tokens["a"] >= 5 or bool(errors), 120)
        b_release.set()
        b_loaded.result(60)
        submit("b", 3)
        assert done["a"].wait(120) and done["b"].wait(120)
    finally:
        b_release.set()
        engine.stop()
        manager.close()
    assert not errors
    start, end = events.index("b-load-start"), events.index("b-load-end")
    # A's tokens arrived while B was loading; B's arrived after.
    assert events[start:end].count("a-token") >= 5, events
    assert events.index("b-token") > end and tokens == {"a": 40, "b": 3}


@pytest.mark.timeout(600)
def test_max_lora_quotes_what_the_budget_holds_of_the_resident_adapters(
    tiny_llama: torch.nn.Module, tmp_path: Path
) -> None:
    """The router's ``max_lora`` is the configured quote until adapters are on the
    device, then the budget over their mean charge (rank 4 on q/v here, not the quote's
    assumption), as the endpoint picker reads it from ``/metrics``."""
    model = tiny_llama
    base = BaseModelShape.of("builtin://tiny", model)
    charge = adapter_device_bytes(
        load_adapter("probe", write_adapter(tmp_path / "probe", model, 0), base, 8)
    )
    bank = LoraSlotBank(model, slots=64, max_bytes=12 * charge)
    metrics = ServingMetrics()
    manager = tiny_manager(model, bank, metrics, host_capacity=64, max_lora=3)
    try:

        def max_lora() -> str:
            text = metrics.render().decode()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            (sample,) = families["vllm:lora_requests_info"].samples
            return sample.labels["max_lora"]

        assert max_lora() == "3"  # nothing on the device yet: the quote
        # Written before any is on the device: then q/v are wrapped, no longer Linears.
        paths = {
            name: write_adapter(tmp_path / name, model, seed) for seed, name in ((1, "a"), (2, "b"))
        }
        for name, path in paths.items():
            manager.add(name, str(path), "test").result(60)
            asyncio.run(manager.pin(name))
            assert manager.acquire(name) is not None
        assert max_lora() == "12"
        assert manager.lora_info().running == ("a", "b")
    finally:
        manager.close()


def test_loads_run_torch_on_their_own_thread_alone(
    tiny_llama: torch.nn.Module, tmp_path: Path
) -> None:
    """A load (and a reload after host eviction) runs torch with one thread, so it never
    starts an OpenMP pool beside the engine's (serving/openmp.py), and the thread that
    asked keeps its own count."""
    model = tiny_llama
    threads_seen: list[int] = []

    def loader(name: str, path: Path, base: BaseModelShape, max_rank: int) -> LoadedAdapter:
        threads_seen.append(torch.get_num_threads())
        return load_adapter(name, path, base, max_rank)

    caller_threads = torch.get_num_threads()
    bank = LoraSlotBank(model, slots=1)
    # One host place: loading "b" evicts "a" from the host tier, so pinning "a" again
    # reads its files back (on asyncio's threads, not the load pool).
    manager = tiny_manager(model, bank, ServingMetrics(), host_capacity=1, loader=loader)
    try:
        for seed, name in ((1, "a"), (2, "b")):
            manager.add(name, str(write_adapter(tmp_path / name, model, seed)), "test").result(60)
        asyncio.run(manager.pin("a"))
        manager.unpin("a")
    finally:
        manager.close()
    assert len(threads_seen) == 3  # a, b, and a read back
    if sys.platform == "linux":  # libgomp, as torch's Linux wheels ship it
        assert threads_seen == [1, 1, 1]
    assert torch.get_num_threads() == caller_threads
