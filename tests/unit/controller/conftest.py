"""Shared values for the controller's pure-function tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.api.finetunejob import FineTuneJobSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.podspec import Owner


@pytest.fixture
def config() -> OperatorConfig:
    return OperatorConfig(
        trainer_image="reg/trainer:1",
        trainer_cpu_image="reg/trainer:1-cpu",
        server_image="reg/server:1",
        server_cpu_image="reg/server:1-cpu",
        relay_image="reg/operator:1",
    )


@pytest.fixture
def ftj_owner() -> Owner:
    return Owner("loraland.dev/v1alpha1", "FineTuneJob", "sentiment", "team-a", "uid-1", 3)


@pytest.fixture
def adep_owner() -> Owner:
    return Owner("loraland.dev/v1alpha1", "AdapterDeployment", "serve", "team-a", "uid-2", 1)


def _ftj_spec(**overrides: Any) -> FineTuneJobSpec:
    raw: dict[str, Any] = {
        "baseModel": {"uri": "pvc://models/smollm2", "secretRef": "hub-creds"},
        "dataset": {"uri": "pvc://data/sentiment.jsonl"},
        "output": {"uri": "pvc://adapters/sentiment", "adapterName": "sentiment-v1"},
        "resources": {
            "gpus": 2,
            "cpu": "8",
            "memory": "32Gi",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
        },
        "backoffLimit": 4,
    }
    raw.update(overrides)
    return FineTuneJobSpec.model_validate(raw)


def _adep_spec(**overrides: Any) -> AdapterDeploymentSpec:
    raw: dict[str, Any] = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "adapters": [
            {"name": "sentiment", "uri": "pvc://adapters/sentiment"},
            {"name": "intents", "fromFineTuneJob": "intents"},
        ],
        "replicas": 2,
        "resources": {"gpus": 1},
        "serving": {"maxBatchSize": 16, "maxLoadedAdapters": 4},
    }
    raw.update(overrides)
    return AdapterDeploymentSpec.model_validate(raw)


SpecFactory = Callable[..., Any]


@pytest.fixture
def ftj_spec() -> SpecFactory:
    """``ftj_spec(**overrides)``: a GPU job on PVCs, with spec fields replaced."""
    return _ftj_spec


@pytest.fixture
def adep_spec() -> SpecFactory:
    """``adep_spec(**overrides)``: two adapters, two replicas, builtin runtime."""
    return _adep_spec
