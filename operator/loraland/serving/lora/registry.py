"""Adapter bookkeeping: states, cache tiers, LRU order and pins. Torch-free.

Three tiers, as in vLLM's LoRA manager:

- **device**: the adapter's A/B weights sit in one of ``device_slots`` slots of the
  paged pools the batched LoRA ops read (see serving/lora/bank.py);
- **host**: its tensors are in host memory, ready to be copied into a slot;
- **disk**: only its files are known; using it means reading them again.

Two kinds of reference protect an adapter from eviction:

- ``users`` counts requests queued or running on it: its host copy stays while any exist,
  so a request admitted by the scheduler always finds its weights in memory;
- ``running`` counts rows in the running batch: its device slot is never given to
  another adapter while any exist.

Everything else is evicted least-recently-used first. The registry only decides; the
owner of the tensors acts through the two eviction callbacks. All methods are
thread-safe: the HTTP side registers and pins, the engine thread acquires slots.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class AdapterState(StrEnum):
    LOADED = "Loaded"
    PENDING = "Pending"
    FAILED = "Failed"


class Tier(StrEnum):
    DEVICE = "device"
    HOST = "host"
    DISK = "disk"


class UnknownAdapter(KeyError):
    """No adapter of that name is registered (or it is being removed)."""


class AdapterExists(ValueError):
    """The name is taken (or its previous adapter is still draining)."""


class AdapterNotReady(RuntimeError):
    """The adapter is registered but not loaded: ``state`` says whether it may still be."""

    def __init__(self, name: str, state: AdapterState, message: str) -> None:
        super().__init__(f"adapter '{name}' is {state.value.lower()}: {message}")
        self.name = name
        self.state = state
        self.message = message


@dataclass
class AdapterView:
    """A snapshot of one adapter for the admin API and metrics."""

    name: str
    uri: str
    origin: str
    state: AdapterState
    message: str
    tier: Tier | None
    slot: int | None
    users: int
    running: int


@dataclass
class _Entry:
    name: str
    uri: str
    origin: str
    generation: int
    state: AdapterState = AdapterState.PENDING
    message: str = "loading"
    in_host: bool = False
    slot: int | None = None
    #: What it costs in each tier's budget unit (bytes: an adapter's rank rows
    #: in its own modules on the device, its tensors on the host).
    device_cost: int = 0
    host_cost: int = 0
    users: int = 0
    running: int = 0
    removed: bool = False

    @property
    def tier(self) -> Tier | None:
        if self.state is not AdapterState.LOADED:
            return None
        if self.slot is not None:
            return Tier.DEVICE
        return Tier.HOST if self.in_host else Tier.DISK

    def view(self) -> AdapterView:
        return AdapterView(
            name=self.name,
            uri=self.uri,
            origin=self.origin,
            state=self.state,
            message=self.message,
            tier=self.tier,
            slot=self.slot,
            users=self.users,
            running=self.running,
        )


@dataclass
class CacheEvents:
    """Hooks for metrics; each gets the tier the event concerns."""

    hit: Callable[[Tier], None] = lambda tier: None
    miss: Callable[[Tier], None] = lambda tier: None
    evicted: Callable[[Tier], None] = lambda tier: None


@dataclass(frozen=True)
class Pin:
    """Returned by :meth:`AdapterRegistry.pin`: ``needs_host_load`` means read from disk."""

    name: str
    generation: int
    needs_host_load: bool


class AdapterRegistry:
    def __init__(
        self,
        device_slots: int,
        host_capacity: int,
        *,
        device_budget: int | None = None,
        host_budget: int | None = None,
        on_device_evict: Callable[[str, int], None] = lambda name, slot: None,
        on_host_evict: Callable[[str], None] = lambda name: None,
        events: CacheEvents | None = None,
    ) -> None:
        if device_slots < 1 or host_capacity < device_slots:
            raise ValueError("need device_slots >= 1 and host_capacity >= device_slots")
        self.device_slots = device_slots
        self.host_capacity = host_capacity
        #: Optional budgets besides the counts: the sum of the residents' costs stays
        #: within them (memory-sized tiers), evicting least-recently-used first.
        self.device_budget = device_budget
        self.host_budget = host_budget
        self._device_used = 0
        self._host_used = 0
        self._on_device_evict = on_device_evict
        self._on_host_evict = on_host_evict
        self._events = events or CacheEvents()
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._device_lru: OrderedDict[str, None] = OrderedDict()
        self._host_lru: OrderedDict[str, None] = OrderedDict()
        # Slot 0 means "no adapter" in the batched op; adapters use 1..device_slots.
        self._free_slots = list(range(device_slots, 0, -1))
        self._generation = 0
        #: Bumped on every change of an adapter's state or tier, so readers (metrics)
        #: can rebuild what they derive from the registry only when it moved.
        self.version = 0

    # -- lifecycle -------------------------------------------------------------------

    def register(self, name: str, uri: str, origin: str) -> int:
        """Add ``name`` as Pending; returns the generation to quote when the load ends."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and not entry.removed:
                raise AdapterExists(f"adapter '{name}' is already registered (uri {entry.uri})")
            if entry is not None:
                # Removed but requests still run on it: its slot must stay until they end.
                raise AdapterExists(f"adapter '{name}' is being unloaded; requests still use it")
            self._generation += 1
            self._entries[name] = _Entry(name, uri, origin, self._generation)
            return self._generation

    def mark_loaded(self, name: str, generation: int, cost: int = 0) -> bool:
        """The host copy (costing ``cost`` of the host budget) is ready. False when the
        entry changed meanwhile (stale load)."""
        with self._lock:
            entry = self._current(name, generation)
            if entry is None:
                return False
            entry.host_cost = cost
            entry.state = AdapterState.LOADED
            entry.message = "ready"
            self._enter_host(entry)
            self.version += 1
            return True

    def mark_failed(self, name: str, generation: int, message: str) -> bool:
        with self._lock:
            entry = self._current(name, generation)
            if entry is None:
                return False
            entry.state = AdapterState.FAILED
            entry.message = message
            self.version += 1
            return True

    def remove(self, name: str) -> None:
        """Unregister ``name``. New requests are refused at once; requests already
        holding it finish first, then its slot and host copy are released."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.removed:
                raise UnknownAdapter(name)
            entry.removed = True
            self.version += 1
            if entry.users == 0 and entry.running == 0:
                self._drop(entry)

    # -- requests --------------------------------------------------------------------

    def pin(self, name: str) -> Pin:
        """A request will use ``name``: keep its host copy until :meth:`unpin`."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.removed:
                raise UnknownAdapter(name)
            if entry.state is not AdapterState.LOADED:
                raise AdapterNotReady(name, entry.state, entry.message)
            entry.users += 1
            if entry.in_host:
                self._host_lru.move_to_end(name)
                self._events.hit(Tier.HOST)
            else:
                self._events.miss(Tier.HOST)
            return Pin(name, entry.generation, needs_host_load=not entry.in_host)

    def host_reloaded(self, name: str, generation: int, cost: int = 0) -> bool:
        """The disk-tier adapter a pin asked for was read back into host memory."""
        with self._lock:
            entry = self._current(name, generation)
            if entry is None:
                return False
            if not entry.in_host:
                entry.host_cost = cost
                self._enter_host(entry)
            return True

    def unpin(self, name: str) -> None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.users == 0:
                return
            entry.users -= 1
            self._settle(entry)

    def acquire_slot(self, name: str, cost: int = 0) -> tuple[int, bool] | None:
        """Give a running row of ``name`` a device slot: ``(slot, needs_copy)``.

        ``cost``: what the adapter takes of the device budget. None when every slot (or
        the budget) is held by running rows; the request then waits a step.
        """
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or (not entry.in_host and entry.slot is None):
                raise UnknownAdapter(name)
            if entry.slot is not None:
                entry.running += 1
                self._device_lru.move_to_end(name)
                self._events.hit(Tier.DEVICE)
                return entry.slot, False
            while not self._free_slots or self._over_device_budget(cost):
                if not self._evict_device_lru():
                    return None
            self._events.miss(Tier.DEVICE)
            self.version += 1
            entry.slot = self._free_slots.pop()
            entry.device_cost = cost
            self._device_used += cost
            entry.running += 1
            self._device_lru[name] = None
            return entry.slot, True

    def release_slot(self, name: str) -> None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.running > 0:
                entry.running -= 1
                self._settle(entry)

    # -- queries ---------------------------------------------------------------------

    def get(self, name: str) -> AdapterView | None:
        with self._lock:
            entry = self._entries.get(name)
            return None if entry is None or entry.removed else entry.view()

    def views(self) -> list[AdapterView]:
        with self._lock:
            return [e.view() for e in self._entries.values() if not e.removed]

    def wanted(self) -> list[str]:
        """Adapters that requests hold but that are not on the device yet."""
        with self._lock:
            return [
                e.name
                for e in self._entries.values()
                if e.users > e.running and e.slot is None and not e.removed
            ]

    def resident(self, tier: Tier) -> list[str]:
        """Names in ``tier``, least recently used first."""
        with self._lock:
            order = self._device_lru if tier is Tier.DEVICE else self._host_lru
            return list(order)

    def device_capacity(self, quoted: int) -> int:
        """How many adapters the device tier holds when full: with a byte budget and
        adapters resident, as many as fit at the residents' mean charge (never fewer
        than are there); otherwise ``quoted``.

        A quote fixed up front has to assume some adapter (a rank, which modules), and
        was off by nearly 2x: 219 quoted, 367-412 rank-8 q/k/v/o adapters held. The
        endpoint picker reads this as room for more (``vllm:lora_requests_info``'s
        ``max_lora``), so it follows what the server actually holds."""
        with self._lock:
            held, used = len(self._device_lru), self._device_used
            if self.device_budget is None or held == 0 or used <= 0:
                return quoted
            return max(held, min(held * self.device_budget // used, self.device_slots))

    # -- internals -------------------------------------------------------------------

    def _over_device_budget(self, cost: int) -> bool:
        budget = self.device_budget
        return budget is not None and self._device_used + cost > budget

    def _current(self, name: str, generation: int) -> _Entry | None:
        entry = self._entries.get(name)
        if entry is None or entry.generation != generation or entry.removed:
            return None
        return entry

    def _settle(self, entry: _Entry) -> None:
        """After a reference was dropped: finish a pending removal, or trim the host tier."""
        if entry.users or entry.running:
            return
        if entry.removed:
            self._drop(entry)
        else:
            self._shrink_host()

    def _enter_host(self, entry: _Entry) -> None:
        self.version += 1
        entry.in_host = True
        self._host_used += entry.host_cost
        self._host_lru[entry.name] = None
        self._host_lru.move_to_end(entry.name)
        self._shrink_host()

    def _shrink_host(self) -> None:
        # Requests in flight may hold more than host_capacity adapters for a while;
        # the overflow is released as their users finish.
        for name in list(self._host_lru):
            if len(self._host_lru) <= self.host_capacity and (
                self.host_budget is None or self._host_used <= self.host_budget
            ):
                return
            entry = self._entries[name]
            if entry.users == 0 and entry.running == 0:
                self._evict_host(entry)

    def _evict_host(self, entry: _Entry) -> None:
        self.version += 1
        if entry.slot is not None:
            self._release_device(entry)
        entry.in_host = False
        self._host_used -= entry.host_cost
        self._host_lru.pop(entry.name, None)
        self._events.evicted(Tier.HOST)
        self._on_host_evict(entry.name)

    def _evict_device_lru(self) -> bool:
        for name in self._device_lru:
            entry = self._entries[name]
            if entry.running == 0:
                self._release_device(entry)
                return True
        return False

    def _release_device(self, entry: _Entry) -> None:
        slot = entry.slot
        assert slot is not None
        self.version += 1
        entry.slot = None
        self._device_used -= entry.device_cost
        entry.device_cost = 0
        self._device_lru.pop(entry.name, None)
        self._free_slots.append(slot)
        self._events.evicted(Tier.DEVICE)
        self._on_device_evict(entry.name, slot)

    def _drop(self, entry: _Entry) -> None:
        self.version += 1
        if entry.slot is not None:
            self._release_device(entry)
        if entry.in_host:
            entry.in_host = False
            self._host_used -= entry.host_cost
            self._host_lru.pop(entry.name, None)
            self._on_host_evict(entry.name)
        if self._entries.get(entry.name) is entry:
            del self._entries[entry.name]
