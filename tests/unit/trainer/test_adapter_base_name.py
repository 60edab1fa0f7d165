"""adapter_config.json's base_model_name_or_path: what the serving runtimes call the base."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.runtimes import plan
from loraland.trainer.run import adapter_base_name

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("base", ["hf://mistralai/Mistral-7B-v0.1", "pvc://models/mistral"])
@pytest.mark.parametrize("runtime", ["lorax", "vllm"])
def test_names_the_base_as_the_runtime_is_started_with(base: str, runtime: str) -> None:
    """LoRAX skips its architecture check only when the two are equal (adapter.py:166)."""
    spec = AdapterDeploymentSpec.model_validate({"baseModel": {"uri": base}, "runtime": runtime})
    args = plan(spec, OperatorConfig()).args
    model = args[args.index("--model-id" if runtime == "lorax" else "--model") + 1]
    assert adapter_base_name(base, Path("/cache/somewhere")) == model


def test_never_a_loraland_uri(tmp_path: Path) -> None:
    local = tmp_path / "converted"
    assert adapter_base_name("builtin://smollm2-135m-instruct", local) == str(local)
    assert adapter_base_name("s3://bucket/models/base", local) == str(local)
    assert adapter_base_name("/models/base", local) == "/models/base"
    assert adapter_base_name("file:///models/base", local) == "/models/base"
    assert adapter_base_name("hf://org/name@v1", local) == "org/name"
