"""Loading base models and tokenizers from resolved directories, with readable errors.

Trainer, server and evaluation all load through here, so a corrupt or incompatible
checkpoint fails the same way everywhere: one :class:`StorageError` naming the URI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loraland.settings import Settings
from loraland.storage import StorageError, resolve

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(precision: Precision, device: str) -> torch.dtype:
    """``auto`` means bf16 on a GPU that supports it and fp32 everywhere else."""
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    uri: str
    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def check_model_dir(uri: str, path: Path) -> None:
    if not path.is_dir():
        raise StorageError(
            uri, f"{path} is not a directory", "a base model is a transformers model directory"
        )
    if not (path / "config.json").is_file():
        raise StorageError(
            uri, f"{path} has no config.json", "is this a transformers model directory?"
        )
    weights = [*path.glob("*.safetensors"), *path.glob("*.bin")]
    if not weights:
        raise StorageError(uri, f"{path} has no *.safetensors or *.bin weights")


def load_tokenizer(uri: str, path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise StorageError(uri, f"cannot load the tokenizer: {exc}") from None
    if tokenizer.pad_token is None:
        # Batched generation and training need a pad token; EOS is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    uri: str,
    settings: Settings,
    *,
    precision: Precision = "auto",
    device: str = "auto",
    quantization_config: object | None = None,
) -> LoadedModel:
    """Resolve ``uri`` and load the causal LM and its tokenizer, in eval mode."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    path = resolve(uri, settings)
    check_model_dir(uri, path)
    target = pick_device(device)
    dtype = pick_dtype(precision, target)
    tokenizer = load_tokenizer(uri, path)
    kwargs: dict[str, object] = {"dtype": dtype}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": target}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            uri,
            f"cannot load the model weights: {first_line}",
            "the files may be corrupt or incomplete",
        ) from None
    # transformers' own annotations for .to()/.eval() don't type-check under strict mypy.
    untyped: Any = model
    if quantization_config is None:
        untyped.to(target)
    untyped.eval()
    return LoadedModel(uri=uri, path=path, model=model, tokenizer=tokenizer)
