"""The router-facing metrics render from cheap state, parsed with prometheus-client."""

from __future__ import annotations

import time

from loraland.serving.lora.registry import AdapterRegistry
from loraland.serving.telemetry import AdapterRow, LoraInfo, ServingMetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def parse(metrics: ServingMetrics) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_lora_info_value_is_the_time_of_the_last_change() -> None:
    metrics = ServingMetrics()
    info = LoraInfo(8, ("a",), ())
    metrics.adapter_source.lora_info = lambda: info
    first = parse(metrics)["vllm:lora_requests_info"]
    assert len(first) == 1
    assert first[0].labels == {
        "max_lora": "8",
        "running_lora_adapters": "a",
        "waiting_lora_adapters": "",
    }
    time.sleep(0.01)
    assert parse(metrics)["vllm:lora_requests_info"][0].value == first[0].value
    info = LoraInfo(8, ("a", "b"), ("c",))
    changed = parse(metrics)["vllm:lora_requests_info"]
    assert len(changed) == 1  # one label set at a time, never the history
    assert changed[0].labels["running_lora_adapters"] == "a,b"
    assert changed[0].labels["waiting_lora_adapters"] == "c"
    assert changed[0].value > first[0].value


def test_adapter_gauges_are_rebuilt_only_when_the_registry_moved() -> None:
    metrics = ServingMetrics()
    calls = []
    version = 1

    def rows() -> list[AdapterRow]:
        calls.append(version)
        return [AdapterRow("a", "device", 8), AdapterRow("b", "host", 64)]

    metrics.adapter_source.rows = rows
    metrics.adapter_source.version = lambda: version
    for _ in range(3):
        samples = parse(metrics)["loraland_lora_adapter_loaded"]
    assert calls == [1]
    assert {(s.labels["adapter_name"], s.labels["level"], s.labels["rank"]) for s in samples} == {
        ("a", "device", "8"),
        ("b", "host", "64"),
    }
    version = 2
    parse(metrics)
    assert calls == [1, 2]


def test_queue_and_running_gauges() -> None:
    metrics = ServingMetrics()
    metrics.set_queue(3)
    metrics.set_running(5, 0.25)
    samples = parse(metrics)
    assert samples["vllm:num_requests_waiting"][0].value == 3
    assert samples["vllm:num_requests_running"][0].value == 5
    assert samples["vllm:kv_cache_usage_perc"][0].value == 0.25


def test_registry_wanted_lists_held_adapters_not_on_the_device() -> None:
    registry = AdapterRegistry(2, 4)
    for name in ("a", "b"):
        registry.mark_loaded(name, registry.register(name, f"/{name}", "test"))
    before = registry.version
    registry.pin("a")
    registry.pin("b")
    assert sorted(registry.wanted()) == ["a", "b"]
    assert registry.acquire_slot("a") is not None
    assert registry.wanted() == ["b"]
    assert registry.version > before
