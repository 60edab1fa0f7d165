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
    bank = LoraSlotBank(model, slots=config.max_loaded_adapters)
    adapters = AdapterManager(
        base,
        bank,
        settings,
        max_rank=config.max_lora_rank,
        host_capacity=config.max_host_adapters,
        roots=list(config.adapter_roots),
        metrics=metrics,
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
