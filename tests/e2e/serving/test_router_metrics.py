"""The metrics a Kubernetes router reads, parsed with prometheus-client's own parser.

The Gateway API Inference Extension's endpoint picker scrapes vLLM's names from the
inference port: queue and running gauges, KV-cache usage, and ``vllm:lora_requests_info``
whose labels list the adapters ready on the device (``running``) and those requests
wait for. These tests read them from the shared server while it works.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from serving_helpers import ServerProcess

PROMPT = "The capital of France is"


def scrape(server: ServerProcess) -> dict[str, list[Sample]]:
    response = httpx.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def one(samples: dict[str, list[Sample]], name: str) -> Sample:
    found = samples.get(name, [])
    assert len(found) == 1, (name, found)
    return found[0]


def _generate(server: ServerProcess, adapter: str, tokens: int) -> int:
    response = httpx.post(
        f"{server.url}/generate",
        json={
            "inputs": PROMPT,
            "parameters": {
                "max_new_tokens": tokens,
                "adapter_id": adapter,
                "ignore_eos_token": True,
            },
        },
        timeout=300,
    )
    return response.status_code


@pytest.mark.timeout(600)  # includes starting the shared server
def test_lora_info_and_adapter_gauges(server: ServerProcess) -> None:
    before = time.time()
    assert _generate(server, "a2", 2) == 200
    samples = scrape(server)
    info = one(samples, "vllm:lora_requests_info")
    running = info.labels["running_lora_adapters"].split(",")
    # a2 was just used: it is in its device slot, ready (the picker's meaning of running).
    assert "a2" in running
    assert info.labels["max_lora"] == "4"  # the server's max_loaded_adapters
    assert "a2" not in info.labels["waiting_lora_adapters"].split(",")
    # The value is the time the label set last changed: a wall-clock time, not a count.
    assert before - 3600 < info.value <= time.time() + 1
    loaded = {
        s.labels["adapter_name"]: s
        for s in samples["loraland_lora_adapter_loaded"]
        if s.value == 1.0
    }
    assert loaded["a2"].labels["level"] == "device" and loaded["a2"].labels["rank"] == "4"
    assert loaded["a3"].labels["rank"] == "16"
    assert "bad-rank" not in loaded  # failed adapters are not loaded
    host_loads = [
        s for s in samples["loraland_adapter_load_seconds_count"] if s.labels.get("tier") == "host"
    ]
    assert host_loads and host_loads[0].value >= 5  # a1..a4 and a1-meta loaded from disk
    device = [
        s
        for s in samples["loraland_adapter_load_seconds_count"]
        if s.labels.get("tier") == "device"
    ]
    assert device and device[0].value >= 1
    # A second scrape with nothing changed reports the same change time.
    again = one(scrape(server), "vllm:lora_requests_info")
    if again.labels == info.labels:
        assert again.value == info.value


@pytest.mark.timeout(600)
def test_waiting_running_and_kv_usage_follow_the_load(server: ServerProcess) -> None:
    idle = scrape(server)
    assert one(idle, "vllm:num_requests_running").value == 0
    assert one(idle, "vllm:num_requests_waiting").value == 0
    assert one(idle, "vllm:kv_cache_usage_perc").value == 0
    # More requests than max_batch_size (24): some must wait while the others run.
    seen_running = seen_waiting = 0.0
    seen_kv = 0.0
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(_generate, server, "a1", 60) for _ in range(30)]
        while not all(f.done() for f in futures):
            samples = scrape(server)
            seen_running = max(seen_running, one(samples, "vllm:num_requests_running").value)
            seen_waiting = max(seen_waiting, one(samples, "vllm:num_requests_waiting").value)
            seen_kv = max(seen_kv, one(samples, "vllm:kv_cache_usage_perc").value)
            time.sleep(0.05)
        assert all(f.result() == 200 for f in futures)
    assert 1 <= seen_running <= 24
    assert seen_waiting >= 1
    assert 0 < seen_kv <= 1
    after = scrape(server)
    assert one(after, "vllm:num_requests_running").value == 0
    assert one(after, "vllm:num_requests_waiting").value == 0
