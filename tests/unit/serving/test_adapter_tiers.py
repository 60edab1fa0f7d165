"""Sizing the adapter tiers: fixed counts when configured, memory budgets otherwise."""

from __future__ import annotations

import pytest
import torch
from loraland.serving.config import ServerConfig
from loraland.serving.errors import ServerConfigError
from loraland.serving.runtime import size_adapter_tiers

MIB = 1024 * 1024
BASE = "builtin://smollm2-135m-instruct"


def config(**fields: object) -> ServerConfig:
    return ServerConfig.build({"base_model": BASE, **fields})


def test_counts_when_configured() -> None:
    tiers = size_adapter_tiers(
        config(max_loaded_adapters=8, max_host_adapters=64), MIB, torch.device("cpu")
    )
    assert (tiers.slots, tiers.max_rows, tiers.max_lora) == (8, None, 8)
    assert (tiers.host_capacity, tiers.host_budget) == (64, None)


def test_memory_budgets_by_default() -> None:
    # 100 MiB of rank rows at 1 MiB a row: 100 rows, so 12 rank-8 adapters for the router.
    tiers = size_adapter_tiers(
        config(adapter_memory_mb=100, host_adapter_memory_mb=300), MIB, torch.device("cpu")
    )
    assert tiers.max_rows == 100 and tiers.slots == 100 and tiers.max_lora == 12
    assert tiers.host_budget == 300 * MIB and tiers.host_capacity >= tiers.slots


def test_the_budget_always_holds_one_adapter_of_the_largest_rank() -> None:
    tiers = size_adapter_tiers(
        config(adapter_memory_mb=1, max_lora_rank=64), MIB, torch.device("cpu")
    )
    assert tiers.max_rows == 64


def test_cpu_default_and_host_default_are_bounded() -> None:
    tiers = size_adapter_tiers(config(), MIB, torch.device("cpu"))
    assert tiers.max_rows is not None and 1024 <= tiers.max_rows <= 2048  # 1-2 GiB on a CPU
    assert tiers.host_budget is not None and 0 < tiers.host_budget <= 4096 * MIB


def test_host_count_below_device_count_is_refused() -> None:
    with pytest.raises(ServerConfigError, match="max_host_adapters"):
        config(max_loaded_adapters=8, max_host_adapters=4)
