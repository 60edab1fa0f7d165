"""The CUDA paths of the trainer: bf16 under ``precision: auto`` and QLoRA 4-bit/8-bit.

These run only where CUDA is present (QLoRA also needs bitsandbytes, the ``qlora``
extra); elsewhere they are skipped with the reason. Each is a short real fine-tune of
the embedded model through ``loraland.trainer`` whose adapter plain ``peft`` must load
and whose weights must have moved from their initial values.

    pytest tests/gpu -m gpu

``LORALAND_GPU_TEST_BASE_MODEL`` names another base model (any URI the trainer takes,
such as a local directory) for a GPU machine without the embedded model's package.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.progress import TrainingProgress
from loraland.data.loading import load_training_data
from loraland.modeling import pick_dtype
from loraland.settings import Settings
from loraland.storage.builtin import DEFAULT_BASE_MODEL
from loraland.trainer.run import train
from peft import PeftConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

needs_bitsandbytes = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="QLoRA needs bitsandbytes (pip install 'loraland[qlora]')",
)


def _spec(tmp_path: Path, **lora: Any) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate(
        {
            "baseModel": {
                "uri": os.environ.get("LORALAND_GPU_TEST_BASE_MODEL", DEFAULT_BASE_MODEL)
            },
            "dataset": {"task": "intents", "maxSamples": 64},
            "lora": {"rank": 8, "alpha": 16, **lora},
            "training": {
                "maxSteps": 8,
                "batchSize": 8,
                "learningRate": 0.002,
                "maxSeqLength": 64,
                "checkpointEverySteps": 0,
                "precision": "auto",
            },
            "output": {"uri": str(tmp_path / "adapter")},
        }
    )


def _finetune(spec: FineTuneJobSpec, settings: Settings, tmp_path: Path) -> Any:
    bundle = load_training_data(spec.dataset, spec.training.seed, settings)
    events: list[TrainingProgress] = []
    trained = train(spec, bundle, settings, tmp_path / "work", events.append)
    assert [e.step for e in events if e.phase == "training"][-1] == spec.training.max_steps
    losses = [e.loss for e in events if e.phase == "training"]
    assert all(loss is not None and math.isfinite(loss) for loss in losses), losses
    # What a user gets back loads with plain peft on top of the base model.
    PeftConfig.from_pretrained(str(trained.adapter_dir))
    assert (trained.adapter_dir / "adapter_model.safetensors").stat().st_size > 0
    return trained


def test_auto_precision_is_bf16_on_a_gpu_that_has_it() -> None:
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert pick_dtype("auto", "cuda") == expected


def test_lora_trains_on_cuda_in_auto_precision(settings: Settings, tmp_path: Path) -> None:
    trained = _finetune(_spec(tmp_path), settings, tmp_path)
    weight = next(p for n, p in trained.model.named_parameters() if "lora_B" in n)
    assert weight.device.type == "cuda"
    assert weight.abs().sum().item() > 0  # B starts at zero; training moved it


@needs_bitsandbytes
@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_qlora_trains_on_cuda(bits: str, settings: Settings, tmp_path: Path) -> None:
    trained = _finetune(_spec(tmp_path, quantization=bits), settings, tmp_path)
    quantized = [m for m in trained.model.modules() if "bitsandbytes" in type(m).__module__]
    assert quantized, "the base model was not loaded quantized"
    weight = next(p for n, p in trained.model.named_parameters() if "lora_B" in n)
    assert weight.abs().sum().item() > 0
