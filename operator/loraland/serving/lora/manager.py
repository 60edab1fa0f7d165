"""Adapters for the running server: registry + loading + host copies + device slots.

The :class:`AdapterRegistry` decides (torch-free); this class acts on its decisions:
loads run on a small thread pool (resolve the URI, read and validate the files), host
copies live in ``_host``, and :meth:`acquire` copies an adapter into its device slot in
the :class:`LoraSlotBank` on the engine thread. A failed load marks only that adapter
Failed, with the reason, and everything else keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from loraland.serving.errors import GenerationFailed, InvalidRequest, NotFound
from loraland.serving.lora.bank import LoraSlotBank, adapter_device_bytes
from loraland.serving.lora.card import AdapterCard, read_card
from loraland.serving.lora.loading import (
    AdapterLoadError,
    BaseModelShape,
    LoadedAdapter,
    load_adapter,
)
from loraland.serving.lora.paths import UnsafeAdapterId, resolve_in_roots
from loraland.serving.lora.registry import (
    AdapterNotReady,
    AdapterRegistry,
    AdapterState,
    AdapterView,
    Tier,
    UnknownAdapter,
)
from loraland.serving.openmp import one_thread_here
from loraland.serving.telemetry import AdapterRow, LoraInfo, ServingMetrics
from loraland.settings import Settings
from loraland.storage import StorageError, resolve

log = logging.getLogger(__name__)

#: ``load_adapter``'s signature: ``(name, path, base, max_rank) -> LoadedAdapter``.
AdapterLoader = Callable[[str, Path, BaseModelShape, int], LoadedAdapter]


class AdapterManager:
    def __init__(
        self,
        base: BaseModelShape,
        bank: LoraSlotBank,
        settings: Settings,
        *,
        max_rank: int,
        host_capacity: int,
        roots: list[Path],
        metrics: ServingMetrics,
        host_budget: int | None = None,
        max_lora: int | None = None,
        loader: AdapterLoader = load_adapter,
    ) -> None:
        self.base = base
        #: Reads and validates an adapter's files (on the load pool, never the engine).
        self.loader = loader
        self.bank = bank
        self.settings = settings
        self.max_rank = max_rank
        self.roots = roots
        self.metrics = metrics
        self.slots = bank.slots
        #: What the router is told the device holds at most (``max_lora``) until
        #: adapters are resident (then see :meth:`AdapterRegistry.device_capacity`).
        self.max_lora = max_lora or bank.slots
        self.registry = AdapterRegistry(
            bank.slots,
            host_capacity,
            device_budget=bank.max_bytes,
            host_budget=host_budget,
            on_device_evict=lambda name, slot: bank.free(slot),
            on_host_evict=self._drop_host,
            events=metrics.cache_events(),
        )
        self._host: dict[str, LoadedAdapter] = {}
        self._paths: dict[str, Path] = {}
        # Kept while the adapter is registered, whatever its tier (the admin API shows it).
        self._cards: dict[str, AdapterCard] = {}
        self._loads: dict[str, Future[AdapterView]] = {}
        #: Rank and device-tier charge of each adapter that loaded once (kept while
        #: it is registered).
        self._ranks: dict[str, int] = {}
        self._device_bytes: dict[str, int] = {}
        #: Requests waiting in :meth:`pin` for an adapter's load, by adapter.
        self._awaiting: Counter[str] = Counter()
        self._tier_version = -1
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="adapter-load")
        source = metrics.adapter_source
        source.version = lambda: self.registry.version
        source.rows = self.metric_rows
        source.lora_info = self.lora_info

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- admin --------------------------------------------------------------------------

    def add(self, name: str, uri: str, origin: str) -> Future[AdapterView]:
        """Register ``name`` (Pending) and load it in the background."""
        generation = self.registry.register(name, uri, origin)
        future = self._pool.submit(self._load, name, uri, generation)
        with self._lock:
            self._loads[name] = future
        return future

    def remove(self, name: str) -> None:
        self.registry.remove(name)

    def views(self) -> list[AdapterView]:
        return self.registry.views()

    def get(self, name: str) -> AdapterView | None:
        return self.registry.get(name)

    def card(self, name: str) -> AdapterCard | None:
        """Rank, task and scores of a loaded adapter (None until its load succeeded)."""
        with self._lock:
            return self._cards.get(name)

    def refresh_metrics(self) -> None:
        """Per-tier counts; recounted only when the registry changed since last time."""
        version = self.registry.version
        if version == self._tier_version:
            return
        counts: dict[Tier, int] = {}
        for view in self.registry.views():
            if view.tier is not None:
                counts[view.tier] = counts.get(view.tier, 0) + 1
        self.metrics.set_tiers(counts)
        self._tier_version = version

    def metric_rows(self) -> list[AdapterRow]:
        rows = []
        for view in self.registry.views():
            if view.tier is not None:
                rows.append(AdapterRow(view.name, view.tier.value, self._ranks.get(view.name, 0)))
        return rows

    def lora_info(self) -> LoraInfo:
        """Adapters ready on the device, and those requests wait for (see telemetry)."""
        running = self.registry.resident(Tier.DEVICE)
        on_device = set(running)
        with self._lock:
            waiting = {name for name, n in self._awaiting.items() if n > 0}
        waiting.update(self.registry.wanted())
        return LoraInfo(
            max_lora=self.registry.device_capacity(self.max_lora),
            running=tuple(sorted(running)),
            waiting=tuple(sorted(waiting - on_device)),
        )

    # -- requests -----------------------------------------------------------------------

    def lookup(self, adapter_id: str) -> str:
        """The registered name for ``adapter_id``, registering it from a root if needed."""
        if self.registry.get(adapter_id) is not None:
            return adapter_id
        if not self.roots:
            raise NotFound(f"adapter '{adapter_id}' is not loaded", param="adapter_id")
        try:
            path = resolve_in_roots(adapter_id, self.roots)
        except UnsafeAdapterId as exc:
            raise InvalidRequest(str(exc), param="adapter_id") from None
        if path is None:
            raise NotFound(
                f"adapter '{adapter_id}' is not loaded and not found under the adapter roots",
                param="adapter_id",
            )
        # A concurrent request may have registered it meanwhile (ValueError): fine.
        with contextlib.suppress(ValueError):
            self.add(adapter_id, str(path), origin="root")
        return adapter_id

    async def pin(self, name: str) -> None:
        """Hold ``name`` for one request (wait for its load; read it back if on disk)."""
        with self._lock:
            pending = self._loads.get(name)
        if pending is not None and not pending.done():
            # Only this request waits for the load (on the event loop); the engine keeps
            # stepping the running batch meanwhile.
            with self._lock:
                self._awaiting[name] += 1
            try:
                await asyncio.wrap_future(pending)
            finally:
                with self._lock:
                    self._awaiting[name] -= 1
                    if self._awaiting[name] <= 0:
                        del self._awaiting[name]
        try:
            pin = self.registry.pin(name)
        except UnknownAdapter:
            raise NotFound(f"adapter '{name}' is not loaded", param="adapter_id") from None
        except AdapterNotReady as exc:
            if exc.state is AdapterState.FAILED:
                raise GenerationFailed(f"adapter '{name}' failed to load: {exc.message}") from None
            raise GenerationFailed(f"adapter '{name}' is not ready: {exc.message}") from None
        if pin.needs_host_load:
            try:
                await asyncio.to_thread(self._reload_host, name, pin.generation)
            except Exception:
                self.registry.unpin(name)
                raise

    def unpin(self, name: str) -> None:
        self.registry.unpin(name)

    # -- engine thread (SlotProvider) ---------------------------------------------------

    def acquire(self, adapter: str) -> int | None:
        got = self.registry.acquire_slot(adapter, cost=self._device_bytes.get(adapter, 0))
        if got is None:
            return None
        slot, needs_copy = got
        if needs_copy:
            begin = time.perf_counter()
            self.bank.write(slot, self._host[adapter])
            self.metrics.adapter_load_time.labels(tier="device").observe(
                time.perf_counter() - begin
            )
        return slot

    def release(self, adapter: str) -> None:
        self.registry.release_slot(adapter)

    # -- loading ------------------------------------------------------------------------

    def _load(self, name: str, uri: str, generation: int) -> AdapterView:
        try:
            path = resolve(uri, self.settings)
            adapter = self._read(name, path)
            card = read_card(path)
        except (StorageError, AdapterLoadError) as exc:
            self._failed(name, generation, str(exc))
        except Exception as exc:
            log.exception("loading adapter %s failed", name)
            self._failed(name, generation, f"{type(exc).__name__}: {exc}")
        else:
            with self._lock:
                self._host[name] = adapter
                self._paths[name] = path
                self._cards[name] = card
                self._ranks[name] = adapter.max_rank
                self._device_bytes[name] = adapter_device_bytes(adapter)
            if not self.registry.mark_loaded(name, generation, cost=adapter.nbytes):
                self._forget(name, adapter)
            else:
                log.info("adapter %s loaded from %s (rank %d)", name, uri, adapter.max_rank)
        view = self.registry.get(name)
        if view is None:
            raise NotFound(f"adapter '{name}' was removed while loading")
        return view

    def _read(self, name: str, path: Path) -> LoadedAdapter:
        """Read ``name``'s files into a host copy, on the calling (load) thread."""
        # Torch on this thread alone: a second OpenMP pool would stop the engine's
        # threads spinning between parallel regions (see serving/openmp.py).
        one_thread_here()
        begin = time.perf_counter()
        adapter = self.loader(name, path, self.base, self.max_rank)
        self.metrics.adapter_load_time.labels(tier="host").observe(time.perf_counter() - begin)
        return adapter

    def _failed(self, name: str, generation: int, message: str) -> None:
        log.warning("adapter %s failed to load: %s", name, message)
        self.registry.mark_failed(name, generation, message)

    def _reload_host(self, name: str, generation: int) -> None:
        with self._lock:
            path = self._paths.get(name)
        if path is None:
            raise GenerationFailed(f"adapter '{name}' has no files to reload")
        try:
            adapter = self._read(name, path)
        except AdapterLoadError as exc:
            raise GenerationFailed(f"adapter '{name}' cannot be reloaded: {exc}") from None
        with self._lock:
            self._host[name] = adapter
        if not self.registry.host_reloaded(name, generation, cost=adapter.nbytes):
            self._forget(name, adapter)
            raise NotFound(f"adapter '{name}' was removed", param="adapter_id")

    def _forget(self, name: str, adapter: LoadedAdapter) -> None:
        with self._lock:
            if self._host.get(name) is adapter:
                del self._host[name]

    def _drop_host(self, name: str) -> None:
        with self._lock:
            self._host.pop(name, None)
            if self.registry.get(name) is None:
                self._paths.pop(name, None)
                self._cards.pop(name, None)
                self._loads.pop(name, None)
                self._ranks.pop(name, None)
                self._device_bytes.pop(name, None)
