"""The torch-free adapter registry, with dummy adapters (names only)."""

from __future__ import annotations

import pytest
from loraland.serving.lora.registry import (
    AdapterExists,
    AdapterNotReady,
    AdapterRegistry,
    AdapterState,
    CacheEvents,
    Tier,
    UnknownAdapter,
)


class Recorder:
    def __init__(self) -> None:
        self.device: list[tuple[str, int]] = []
        self.host: list[str] = []
        self.events: list[tuple[str, Tier]] = []

    def registry(self, slots: int = 2, host: int = 3) -> AdapterRegistry:
        return AdapterRegistry(
            slots,
            host,
            on_device_evict=lambda name, slot: self.device.append((name, slot)),
            on_host_evict=self.host.append,
            events=CacheEvents(
                hit=lambda t: self.events.append(("hit", t)),
                miss=lambda t: self.events.append(("miss", t)),
                evicted=lambda t: self.events.append(("evicted", t)),
            ),
        )


def loaded(registry: AdapterRegistry, *names: str) -> None:
    for name in names:
        generation = registry.register(name, f"/adapters/{name}", "test")
        assert registry.mark_loaded(name, generation)


def run(registry: AdapterRegistry, name: str) -> int:
    registry.pin(name)
    got = registry.acquire_slot(name)
    assert got is not None
    return got[0]


def finish(registry: AdapterRegistry, name: str) -> None:
    registry.release_slot(name)
    registry.unpin(name)


def test_states_pending_failed_loaded() -> None:
    registry = Recorder().registry()
    generation = registry.register("a", "/a", "test")
    view = registry.get("a")
    assert view is not None and view.state is AdapterState.PENDING and view.tier is None
    with pytest.raises(AdapterNotReady):
        registry.pin("a")
    registry.mark_failed("a", generation, "bad files")
    with pytest.raises(AdapterNotReady, match="bad files"):
        registry.pin("a")
    with pytest.raises(AdapterExists):
        registry.register("a", "/a", "test")
    with pytest.raises(UnknownAdapter):
        registry.pin("nope")


def test_stale_load_results_are_ignored() -> None:
    registry = Recorder().registry()
    old = registry.register("a", "/a", "test")
    registry.remove("a")
    registry.register("a", "/a2", "test")
    assert not registry.mark_loaded("a", old)
    view = registry.get("a")
    assert view is not None and view.state is AdapterState.PENDING


def test_device_lru_evicts_least_recent_idle_adapter() -> None:
    rec = Recorder()
    registry = rec.registry(slots=2, host=5)
    loaded(registry, "a", "b", "c")
    slot_a = run(registry, "a")
    finish(registry, "a")
    run(registry, "b")
    finish(registry, "b")
    run(registry, "a")  # a is now more recent than b
    finish(registry, "a")
    slot_c = run(registry, "c")
    assert rec.device == [("b", slot_c)]
    assert registry.get("a").tier is Tier.DEVICE  # type: ignore[union-attr]
    assert registry.get("b").tier is Tier.HOST  # type: ignore[union-attr]
    assert slot_a != slot_c
    assert ("hit", Tier.DEVICE) in rec.events and ("evicted", Tier.DEVICE) in rec.events


def test_never_evicts_an_adapter_a_running_request_uses() -> None:
    rec = Recorder()
    registry = rec.registry(slots=2, host=5)
    loaded(registry, "a", "b", "c")
    run(registry, "a")
    run(registry, "b")
    registry.pin("c")
    assert registry.acquire_slot("c") is None  # both slots busy
    assert rec.device == []
    finish(registry, "a")
    got = registry.acquire_slot("c")
    assert got is not None and rec.device == [("a", got[0])]


def test_same_adapter_shares_one_slot() -> None:
    registry = Recorder().registry()
    loaded(registry, "a")
    first, second = run(registry, "a"), run(registry, "a")
    assert first == second
    assert registry.get("a").running == 2  # type: ignore[union-attr]


def test_host_tier_evicts_unpinned_to_disk_and_reload_brings_back() -> None:
    rec = Recorder()
    registry = rec.registry(slots=1, host=2)
    loaded(registry, "a")
    registry.pin("a")  # queued request: a must stay in memory
    loaded(registry, "b", "c")
    assert rec.host == ["b"]  # a is pinned, b was the least recent idle one
    assert registry.get("b").tier is Tier.DISK  # type: ignore[union-attr]
    pin = registry.pin("b")
    assert pin.needs_host_load
    assert registry.host_reloaded("b", pin.generation)
    registry.unpin("a")
    assert "a" in rec.host or "c" in rec.host
    assert registry.get("b").tier is Tier.HOST  # type: ignore[union-attr]


def test_remove_waits_for_running_requests() -> None:
    rec = Recorder()
    registry = rec.registry()
    loaded(registry, "a")
    slot = run(registry, "a")
    registry.remove("a")
    assert registry.get("a") is None  # invisible to new requests at once
    with pytest.raises(UnknownAdapter):
        registry.pin("a")
    with pytest.raises(AdapterExists):  # its slot is still in use
        registry.register("a", "/new", "test")
    assert rec.device == []
    registry.unpin("a")
    assert rec.device == []  # still running
    registry.release_slot("a")
    assert rec.device == [("a", slot)] and rec.host == ["a"]
    registry.register("a", "/new", "test")


def test_views_list_everything_with_tiers() -> None:
    registry = Recorder().registry()
    loaded(registry, "a", "b")
    run(registry, "a")
    tiers = {v.name: v.tier for v in registry.views()}
    assert tiers == {"a": Tier.DEVICE, "b": Tier.HOST}
    assert registry.resident(Tier.DEVICE) == ["a"]


# -- memory-sized tiers: budgets besides the counts -----------------------------------


def test_device_budget_in_rank_rows_evicts_idle_adapters_until_the_newcomer_fits() -> None:
    rec = Recorder()
    registry = AdapterRegistry(
        100,
        100,
        device_budget=32,
        on_device_evict=lambda name, slot: rec.device.append((name, slot)),
    )
    loaded(registry, "r8a", "r8b", "r16", "r64")
    for name, rank in (("r8a", 8), ("r8b", 8), ("r16", 16)):
        registry.pin(name)
        assert registry.acquire_slot(name, cost=rank) is not None
        finish(registry, name)
    assert rec.device == []  # 8 + 8 + 16 = 32 rank rows: all fit, slots to spare
    registry.pin("r16")
    assert registry.acquire_slot("r16", cost=16) is not None  # r16 is now the most recent
    # A rank-64 adapter exceeds the whole budget once the others are out, yet is only
    # refused (None) after evicting every idle resident, never admitted over budget.
    registry.pin("r64")
    assert registry.acquire_slot("r64", cost=64) is None
    assert [name for name, _ in rec.device] == ["r8a", "r8b"]  # r16 runs: kept
    registry.unpin("r64")
    finish(registry, "r16")
    registry.pin("r8a")
    assert registry.acquire_slot("r8a", cost=8) is not None  # 16 + 8 <= 32: no eviction
    assert [name for name, _ in rec.device] == ["r8a", "r8b"]


def test_host_budget_in_bytes_evicts_least_recent_idle_adapters_to_disk() -> None:
    rec = Recorder()
    registry = AdapterRegistry(2, 1_000_000, host_budget=250, on_host_evict=rec.host.append)
    for name in ("a", "b"):
        generation = registry.register(name, f"/adapters/{name}", "test")
        assert registry.mark_loaded(name, generation, cost=100)
    assert rec.host == []
    registry.pin("a")  # a runs: it stays whatever the budget says
    generation = registry.register("c", "/adapters/c", "test")
    assert registry.mark_loaded("c", generation, cost=100)
    assert rec.host == ["b"]  # 300 > 250: the least recent idle one goes to disk
    view = registry.get("b")
    assert view is not None and view.tier is Tier.DISK and view.state is AdapterState.LOADED
    # Brought back by a request: it enters the host tier again, pushing out the next.
    pin = registry.pin("b")
    assert pin.needs_host_load
    assert registry.host_reloaded("b", pin.generation, cost=100)
    assert rec.host == ["b", "c"]


def test_device_capacity_follows_the_resident_adapters_charge() -> None:
    registry = AdapterRegistry(50, 100, device_budget=1000)
    assert registry.device_capacity(quoted=7) == 7  # nothing resident: the quote
    loaded(registry, "a", "b", "c", "big")
    for name in ("a", "b"):
        registry.pin(name)
        assert registry.acquire_slot(name, cost=100) is not None
        finish(registry, name)
    assert registry.device_capacity(quoted=7) == 10  # 1000 bytes at 100 each
    registry.pin("big")
    assert registry.acquire_slot("big", cost=400) is not None
    assert registry.device_capacity(quoted=7) == 5  # mean charge 200
    finish(registry, "big")
    registry.remove("big")
    registry.remove("a")
    registry.remove("b")
    assert registry.device_capacity(quoted=7) == 7  # empty again
    slots_bound = AdapterRegistry(3, 100, device_budget=1000)
    loaded(slots_bound, "a")
    slots_bound.pin("a")
    assert slots_bound.acquire_slot("a", cost=10) is not None
    assert slots_bound.device_capacity(quoted=7) == 3  # 100 would fit; 3 slots exist
    counted = AdapterRegistry(4, 100)  # tiers sized by count: the count is the answer
    loaded(counted, "a")
    counted.pin("a")
    assert counted.acquire_slot("a", cost=0) is not None
    assert counted.device_capacity(quoted=4) == 4
