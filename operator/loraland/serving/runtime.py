"""Assembling the serving objects from a config: model, adapters, engine, service.

This is the one place that loads the base model; ``server.py`` runs it in a thread
after the HTTP server is up, so ``/health`` can answer 503 while it loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from loraland.modeling import load_base_model
from loraland.serving.config import ServerConfig
from loraland.serving.engine.batch import ModelRunner
from loraland.serving.engine.loop import Engine, EngineLimits, TokenizerInfo
from loraland.serving.engine.scheduler import PrefillPolicy
from loraland.serving.lora.bank import LoraSlotBank, RowBytes
from loraland.serving.lora.loading import BaseModelShape
from loraland.serving.lora.manager import AdapterManager
from loraland.serving.lora.native import paged_lora_op
from loraland.serving.memory import read_available
from loraland.serving.service import GenerationService, LockedTokenizer
from loraland.serving.telemetry import ServingMetrics
from loraland.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: ServerConfig
    metrics: ServingMetrics
    tokenizer: LockedTokenizer
    engine: Engine
    adapters: AdapterManager
    service: GenerationService
    device: str
    dtype: str

    def close(self) -> None:
        self.engine.stop()
        self.adapters.close()


def _ids(value: object) -> Iterable[int]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list | tuple):
        return (int(v) for v in value)
    return ()


#: The rank ``max_lora`` is quoted at when the device tier is sized from memory and
#: holds nothing yet: the most common LoRA rank.
_TYPICAL_RANK = 8
_MIB = 1024 * 1024
_GIB = 1024 * _MIB
#: Slot bookkeeping is plain lists sized by the slot count; a budget that could hold
#: more rank-1 single-module adapters than this is still capped here.
_MAX_SLOTS = 1 << 16


@dataclass(frozen=True)
class AdapterTiers:
    slots: int
    #: Device-tier budget in bytes (None: counted by ``slots`` only).
    device_budget: int | None
    max_lora: int
    host_capacity: int
    host_budget: int | None


def cpu_device_budget(available: int | None) -> int:
    """The CPU "device" tier: an eighth of what is available, 1-2 GiB on a big host.

    The 1 GiB floor only holds where a quarter of the memory is at least that: in a pod
    with a 3 GiB limit, ``available`` is the cgroup's headroom after the model loaded,
    and a fixed floor would take a third of the pod.
    """
    if available is None:
        available = 8 * _GIB
    floor = min(_GIB, available // 4)
    return max(floor, min(2 * _GIB, available // 8))


def host_tier_budget(available: int | None) -> int:
    """The host tier: a quarter of what is available, at most 4 GiB."""
    if available is None:
        available = 16 * _GIB
    return min(4 * _GIB, available // 4)


def size_adapter_tiers(
    config: ServerConfig, rows: RowBytes, device: object, available: int | None
) -> AdapterTiers:
    """Slots and budgets of the two memory tiers: counts when configured, else memory.

    Both budgets are bytes: the device tier's is charged per adapter for the rank rows
    of the modules it targets (:func:`adapter_device_bytes`), the host tier's for its
    real tensors. ``available``: what the process may still allocate (see
    :mod:`loraland.serving.memory`; None when unknown).
    """
    import torch

    if config.max_loaded_adapters is not None:
        slots, budget, max_lora = config.max_loaded_adapters, None, config.max_loaded_adapters
    else:
        if config.adapter_memory_mb is not None:
            budget = int(config.adapter_memory_mb * _MIB)
        elif isinstance(device, torch.device) and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = free // 10
        else:
            budget = cpu_device_budget(available)
        # One adapter of the largest rank on every Linear always fits.
        budget = max(budget, config.max_lora_rank * rows.every_linear)
        slots = max(1, min(budget // rows.cheapest, _MAX_SLOTS))
        # Quoted for adapters on every Linear until some are resident (then the registry
        # counts what the budget holds of them: AdapterRegistry.device_capacity).
        max_lora = max(1, budget // (_TYPICAL_RANK * rows.every_linear))
    if config.max_host_adapters is not None:
        host_capacity, host_budget = config.max_host_adapters, None
    else:
        if config.host_adapter_memory_mb is not None:
            host_budget = int(config.host_adapter_memory_mb * _MIB)
        else:
            host_budget = host_tier_budget(available)
        host_capacity = max(slots, 1_000_000)
    slots = min(slots, host_capacity)
    return AdapterTiers(slots, budget, max_lora, host_capacity, host_budget)


def build_runtime(config: ServerConfig, settings: Settings, metrics: ServingMetrics) -> Runtime:
    """Load the base model and start the engine; adapters from the config start loading."""
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    loaded = load_base_model(
        config.base_model, settings, precision=config.precision, device=config.device
    )
    model = loaded.model
    base = BaseModelShape.of(config.base_model, model)
    tiers = size_adapter_tiers(config, LoraSlotBank.row_bytes(model), base.device, read_available())
    log.info(
        "adapter tiers: %d device slots (%s bytes), %d host adapters (%s bytes)",
        tiers.slots,
        tiers.device_budget if tiers.device_budget is not None else "any",
        tiers.host_capacity,
        tiers.host_budget if tiers.host_budget is not None else "any",
    )
    bank = LoraSlotBank(
        model,
        slots=tiers.slots,
        max_bytes=tiers.device_budget,
        native=paged_lora_op(settings.kernels_dir, settings.native_kernels)
        if base.device.type == "cpu"
        else None,
    )
    adapters = AdapterManager(
        base,
        bank,
        settings,
        max_rank=config.max_lora_rank,
        host_capacity=tiers.host_capacity,
        roots=list(config.adapter_roots),
        metrics=metrics,
        host_budget=tiers.host_budget,
        max_lora=tiers.max_lora,
    )
    tokenizer = LockedTokenizer(loaded.tokenizer)
    hf_tokenizer = loaded.tokenizer
    eos = set(_ids(getattr(model.generation_config, "eos_token_id", None)))
    eos.update(_ids(hf_tokenizer.eos_token_id))
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    engine = Engine(
        ModelRunner(model, bank, pad_id=int(pad_id)),
        adapters,
        TokenizerInfo(
            decode=lambda ids: tokenizer.decode(ids),
            special_ids=tokenizer.special_ids,
            eos_ids=frozenset(eos),
            pad_id=int(pad_id),
        ),
        EngineLimits(
            max_batch_size=config.max_batch_size,
            max_batch_total_tokens=config.batch_token_budget,
            max_batch_prefill_tokens=config.max_batch_prefill_tokens,
            max_concurrent_requests=config.max_concurrent_requests,
            max_queue_length=config.max_queue_length,
            prefill=PrefillPolicy(config.waiting_served_ratio, config.max_waiting_steps),
            prefill_chunk_tokens=config.prefill_chunk_tokens,
        ),
        metrics,
    )
    engine.start()
    for adapter in config.adapters:
        adapters.add(adapter.name, adapter.uri, origin="config")
    service = GenerationService(config, engine, adapters, tokenizer, metrics)
    return Runtime(
        config=config,
        metrics=metrics,
        tokenizer=tokenizer,
        engine=engine,
        adapters=adapters,
        service=service,
        device=str(base.device),
        dtype=str(base.dtype).removeprefix("torch."),
    )
