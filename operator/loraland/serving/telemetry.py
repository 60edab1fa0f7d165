"""Prometheus metrics of one server instance. Torch-free.

Each server owns its own ``CollectorRegistry`` (no module-level globals), so tests can
run several servers in one process. The engine, the adapter registry and the service
record into it; ``GET /metrics`` renders it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from loraland.serving.lora.registry import CacheEvents, Tier

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

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
