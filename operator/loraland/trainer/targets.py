"""Which modules LoRA adapts, and whether QLoRA can run here (checked before any work)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from loraland.api.finetunejob import Quantization
from loraland.trainer.errors import TrainerError

#: LoRA Land adapts the query and value projections; these are their names per family.
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{
        name: ["q_proj", "v_proj"]
        for name in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen3",
            "qwen2_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi3",
            "phi",
            "opt",
            "olmo",
            "olmo2",
            "granite",
            "starcoder2",
            "smollm3",
            "cohere",
            "stablelm",
            "deepseek_v2",
            "internlm2",
        )
    },
    "gpt2": ["c_attn"],
    "gpt_bigcode": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "bloom": ["query_key_value"],
    "gptj": ["q_proj", "v_proj"],
    "gpt_neo": ["q_proj", "v_proj"],
}


def default_target_modules(model_type: str) -> list[str]:
    try:
        return list(DEFAULT_TARGETS[model_type])
    except KeyError:
        raise TrainerError(
            f"no default LoRA target modules for model type '{model_type}'; "
            "set lora.targetModules (e.g. the attention projection names)"
        ) from None


def check_target_modules(wanted: Iterable[str], module_names: Iterable[str]) -> None:
    suffixes = {name.rsplit(".", 1)[-1] for name in module_names}
    missing = [name for name in wanted if name not in suffixes]
    if missing:
        linear_like = sorted(s for s in suffixes if "proj" in s or "attn" in s or "fc" in s)
        raise TrainerError(
            f"lora.targetModules: {', '.join(missing)} not found in the model "
            f"(candidates: {', '.join(linear_like[:20]) or 'none'})"
        )


def check_quantization(quantization: Quantization, cuda_available: bool) -> None:
    """QLoRA needs a CUDA device and bitsandbytes; say so before loading anything."""
    if quantization == "none":
        return
    if not cuda_available:
        raise TrainerError(
            f"lora.quantization: {quantization} (QLoRA) needs a CUDA GPU and this machine has "
            "none; use quantization: none to train on the CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainerError(
            f"lora.quantization: {quantization} needs the bitsandbytes package "
            "(pip install bitsandbytes), which is not installed"
        )
