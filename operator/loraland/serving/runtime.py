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
from loraland.serving.lora.layers import LoraSlotBank
from loraland.serving.lora.loading import BaseModelShape
from loraland.serving.lora.manager import AdapterManager
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


#: The rank ``max_lora`` is quoted at when the device tier is sized from memory: the
#: most common LoRA rank, so the router's "room for another adapter" is about right.
_TYPICAL_RANK = 8
_MIB = 1024 * 1024


@dataclass(frozen=True)
class AdapterTiers:
    slots: int
    max_rows: int | None
    max_lora: int
    host_capacity: int
    host_budget: int | None


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def size_adapter_tiers(config: ServerConfig, bytes_per_row: int, device: object) -> AdapterTiers:
    """Slots and budgets of the two memory tiers: counts when configured, else memory.

    The device tier is measured in rank rows (an adapter of rank r holds r of them in
    every module it could target), so a budget holds four rank-4 adapters where it
    holds one rank-16 adapter; the host tier in bytes of the adapters' real tensors.
    """
    import torch

    if config.max_loaded_adapters is not None:
        slots, max_rows, max_lora = config.max_loaded_adapters, None, config.max_loaded_adapters
    else:
        if config.adapter_memory_mb is not None:
            budget = int(config.adapter_memory_mb * _MIB)
        elif isinstance(device, torch.device) and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = free // 10
        else:
            # On a CPU the "device" tier is host memory too: sized from what is available,
            # like the host tier but half as much. A fixed 1 GiB was 879 rank rows on the
            # embedded model (a row is budgeted as if an adapter targeted every Linear),
            # fewer than 40 adapters of ranks 4/8/16/64 hold, so a mixed-rank load kept
            # copying adapters in and out on the engine thread.
            available = _available_memory() or 8 * 1024 * _MIB
            budget = max(1024 * _MIB, min(2048 * _MIB, available // 8))
        max_rows = max(budget // bytes_per_row, config.max_lora_rank)
        slots = max_rows  # every adapter holds at least one row
        max_lora = max(1, max_rows // _TYPICAL_RANK)
    if config.max_host_adapters is not None:
        host_capacity, host_budget = config.max_host_adapters, None
    else:
        if config.host_adapter_memory_mb is not None:
            host_budget = int(config.host_adapter_memory_mb * _MIB)
        else:
            available = _available_memory() or 16 * 1024 * _MIB
            host_budget = min(4096 * _MIB, available // 4)
        host_capacity = max(slots, 1_000_000)
    slots = min(slots, host_capacity)
    return AdapterTiers(slots, max_rows, max_lora, host_capacity, host_budget)


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
    tiers = size_adapter_tiers(config, LoraSlotBank.bytes_per_row(model), base.device)
    log.info(
        "adapter tiers: %d device slots (%s rank rows), %d host adapters (%s bytes)",
        tiers.slots,
        tiers.max_rows if tiers.max_rows is not None else "any",
        tiers.host_capacity,
        tiers.host_budget if tiers.host_budget is not None else "any",
    )
    bank = LoraSlotBank(model, slots=tiers.slots, max_rows=tiers.max_rows)
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
