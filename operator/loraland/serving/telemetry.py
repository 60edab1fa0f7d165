"""Prometheus metrics of one server instance. Torch-free.

Each server owns its own ``CollectorRegistry`` (no module-level globals), so tests can
run several servers in one process. The engine, the adapter registry and the service
record into it; ``GET /metrics`` renders it.

Besides loraland's own names, the server exports the gauges a Kubernetes router reads
from vLLM-compatible servers (the Gateway API Inference Extension's endpoint picker):
``vllm:num_requests_waiting``, ``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc``
and ``vllm:lora_requests_info``. The picker scrapes every 50 ms, so nothing here does
work per scrape beyond formatting: the engine sets the gauges as it steps, and the
per-adapter block is rebuilt only when the adapter registry changed (its ``version``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from loraland.serving.lora.registry import CacheEvents, Tier

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LOAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class AdapterRow:
    """One adapter as the per-adapter gauge shows it (``level`` is its cache tier)."""

    name: str
    level: str
    rank: int


@dataclass(frozen=True)
class LoraInfo:
    """What ``vllm:lora_requests_info`` reports.

    ``running``: adapters loaded on the device and ready to serve (the meaning the
    endpoint picker's LoRA affinity scorer assumes: routing a request for one of them
    here needs no load); ``waiting``: adapters that requests wait for (still loading, or
    not on the device yet); ``max_lora``: how many adapters the device holds at most.
    """

    max_lora: int
    running: tuple[str, ...]
    waiting: tuple[str, ...]


class _AdapterSource:
    """Where the collectors read adapter state from (the AdapterManager, once built)."""

    def __init__(self) -> None:
        self.version: Callable[[], int] = lambda: 0
        self.rows: Callable[[], list[AdapterRow]] = list
        self.lora_info: Callable[[], LoraInfo] = lambda: LoraInfo(0, (), ())


class _LoraInfoCollector(Collector):
    """``vllm:lora_requests_info``: one sample, labels = the current adapter sets, value =
    the time they last changed (vLLM's convention; the picker keeps the newest sample).

    Exactly one label set is exported at a time, unlike a labelled Gauge that would keep
    every set ever seen."""

    def __init__(self, source: _AdapterSource) -> None:
        self._source = source
        self._last: LoraInfo | None = None
        self._changed_at = time.time()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        info = self._source.lora_info()
        with self._lock:
            if info != self._last:
                self._last = info
                self._changed_at = time.time()
            changed_at = self._changed_at
        family = GaugeMetricFamily(
            "vllm:lora_requests_info",
            "Running (loaded, ready) and waiting LoRA adapters; value: last change time",
            labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
        )
        family.add_metric(
            [str(info.max_lora), ",".join(info.running), ",".join(info.waiting)], changed_at
        )
        yield family


class _AdapterLoadedCollector(Collector):
    """``loraland_lora_adapter_loaded{adapter_name, level, rank}`` = 1 per registered,
    loaded adapter; rebuilt only when the registry's version moved."""

    def __init__(self, source: _AdapterSource) -> None:
        self._source = source
        self._version = -1
        self._family: GaugeMetricFamily | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        version = self._source.version()
        with self._lock:
            if self._family is None or version != self._version:
                family = GaugeMetricFamily(
                    "loraland_lora_adapter_loaded",
                    "1 for each loaded adapter, at its cache level (device, host, disk)",
                    labels=["adapter_name", "level", "rank"],
                )
                for row in self._source.rows():
                    family.add_metric([row.name, row.level, str(row.rank)], 1.0)
                self._family, self._version = family, version
            family = self._family
        yield family


CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "loraland_time_to_first_token_seconds",
            "Time from request arrival to its first generated token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "loraland_inter_token_latency_seconds",
            "Time between consecutive generated tokens of one request",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "loraland_request_duration_seconds",
            "Time from request arrival to its last token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "loraland_queue_time_seconds",
            "Time a request waited before its prefill",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "loraland_queue_depth", "Requests waiting for a batch slot", registry=r
        )
        self.running = Gauge(
            "loraland_running_requests", "Requests in the running batch", registry=r
        )
        self.batch_size = Histogram(
            "loraland_batch_size", "Rows per decode step", buckets=_BATCH_BUCKETS, registry=r
        )
        self.requests = Counter(
            "loraland_requests",
            "Requests by adapter and outcome",
            ["adapter", "status"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "loraland_generated_tokens", "Generated tokens by adapter", ["adapter"], registry=r
        )
        self.rejected = Counter(
            "loraland_rejected_requests",
            "Requests refused before generation, by reason",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "loraland_adapter_cache_hits", "Adapter found in the tier", ["tier"], registry=r
        )
        self.cache_misses = Counter(
            "loraland_adapter_cache_misses", "Adapter not in the tier", ["tier"], registry=r
        )
        self.cache_evictions = Counter(
            "loraland_adapter_cache_evictions",
            "Adapters evicted from the tier",
            ["tier"],
            registry=r,
        )
        self.adapters_by_tier = Gauge(
            "loraland_adapters", "Adapters per cache tier", ["tier"], registry=r
        )
        self.adapter_load_time = Histogram(
            "loraland_adapter_load_seconds",
            "Time to bring an adapter into a tier: 'host' reads and checks its files, "
            "'device' copies it into its device slot",
            ["tier"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        # The names a vLLM-compatible router reads (see the module docstring).
        self.vllm_waiting = Gauge(
            "vllm:num_requests_waiting", "Requests waiting to be scheduled", registry=r
        )
        self.vllm_running = Gauge(
            "vllm:num_requests_running", "Requests in the running batch", registry=r
        )
        self.vllm_kv_usage = Gauge(
            "vllm:kv_cache_usage_perc",
            "Fraction of the KV-cache token budget in use (0 to 1)",
            registry=r,
        )
        self.adapter_source = _AdapterSource()
        r.register(_LoraInfoCollector(self.adapter_source))
        r.register(_AdapterLoadedCollector(self.adapter_source))

    def set_queue(self, waiting: int) -> None:
        self.queue_depth.set(waiting)
        self.vllm_waiting.set(waiting)

    def set_running(self, rows: int, kv_usage: float) -> None:
        self.running.set(rows)
        self.vllm_running.set(rows)
        self.vllm_kv_usage.set(kv_usage)

    def cache_events(self) -> CacheEvents:
        return CacheEvents(
            hit=lambda tier: self.cache_hits.labels(tier=tier.value).inc(),
            miss=lambda tier: self.cache_misses.labels(tier=tier.value).inc(),
            evicted=lambda tier: self.cache_evictions.labels(tier=tier.value).inc(),
        )

    def set_tiers(self, counts: dict[Tier, int]) -> None:
        for tier in Tier:
            self.adapters_by_tier.labels(tier=tier.value).set(counts.get(tier, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
