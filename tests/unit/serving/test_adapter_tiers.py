"""Sizing the adapter tiers: fixed counts when configured, memory budgets otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from loraland.serving.config import ServerConfig
from loraland.serving.errors import ServerConfigError
from loraland.serving.lora.bank import RowBytes, adapter_device_bytes
from loraland.serving.lora.loading import LoadedAdapter, ModuleWeights
from loraland.serving.runtime import cpu_device_budget, host_tier_budget, size_adapter_tiers

MIB = 1024 * 1024
BASE = "builtin://smollm2-135m-instruct"


def config(**fields: object) -> ServerConfig:
    return ServerConfig.build({"base_model": BASE, **fields})


#: 1 MiB a rank row on every Linear; 64 KiB on the cheapest one.
ROWS = RowBytes(every_linear=MIB, cheapest=64 * 1024)
GIB = 1024 * MIB


def test_counts_when_configured() -> None:
    tiers = size_adapter_tiers(
        config(max_loaded_adapters=8, max_host_adapters=64), ROWS, torch.device("cpu"), None
    )
    assert (tiers.slots, tiers.device_budget, tiers.max_lora) == (8, None, 8)
    assert (tiers.host_capacity, tiers.host_budget) == (64, None)


def test_memory_budgets_by_default() -> None:
    # 100 MiB at 1 MiB a row on every Linear: 12 rank-8 adapters quoted to the router;
    # slots for as many rank-1 adapters on the cheapest module as the bytes hold.
    tiers = size_adapter_tiers(
        config(adapter_memory_mb=100, host_adapter_memory_mb=300), ROWS, torch.device("cpu"), None
    )
    assert tiers.device_budget == 100 * MIB and tiers.max_lora == 12
    assert tiers.slots == 1600
    assert tiers.host_budget == 300 * MIB and tiers.host_capacity >= tiers.slots


def test_the_budget_always_holds_one_adapter_of_the_largest_rank() -> None:
    tiers = size_adapter_tiers(
        config(adapter_memory_mb=1, max_lora_rank=64), ROWS, torch.device("cpu"), None
    )
    assert tiers.device_budget == 64 * MIB


def test_cpu_default_and_host_default_are_bounded() -> None:
    tiers = size_adapter_tiers(config(), ROWS, torch.device("cpu"), 20 * GIB)
    assert tiers.device_budget == 2 * GIB  # an eighth of 20 GiB, capped at 2 GiB
    assert tiers.host_budget == 4 * GIB


@pytest.mark.parametrize(
    ("available", "device", "host"),
    [
        (20 * GIB, 2 * GIB, 4 * GIB),  # a big host: both capped
        (12 * GIB, 1536 * MIB, 3 * GIB),  # an eighth, a quarter
        (6 * GIB, GIB, 1536 * MIB),  # the 1 GiB floor: a quarter is above it
        (2 * GIB, 512 * MIB, 512 * MIB),  # a 3 GiB pod after the model: no 1 GiB floor
        (None, GIB, 4 * GIB),  # unknown: 8 GiB / 16 GiB assumed
    ],
)
def test_cpu_budgets_follow_what_is_available(
    available: int | None, device: int, host: int
) -> None:
    assert cpu_device_budget(available) == device
    assert host_tier_budget(available) == host


def test_an_adapter_is_charged_for_its_own_modules_only() -> None:
    def weights(rank: int, fan_in: int, fan_out: int) -> ModuleWeights:
        return ModuleWeights.from_peft(torch.zeros(rank, fan_in), torch.zeros(fan_out, rank), 1.0)

    attention = LoadedAdapter("att", Path("."), {"q": weights(8, 64, 64), "v": weights(4, 64, 16)})
    # Rows are allocated at the largest rank (8) in every module the adapter targets,
    # fp32: 8 x ((64 + 64) + (64 + 16)) x 4 bytes, whatever else the model has.
    assert adapter_device_bytes(attention) == 8 * (128 + 80) * 4


def test_host_count_below_device_count_is_refused() -> None:
    with pytest.raises(ServerConfigError, match="max_host_adapters"):
        config(max_loaded_adapters=8, max_host_adapters=4)
