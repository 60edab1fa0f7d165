"""Loading PEFT adapters from URIs onto one base model, for side-by-side scoring."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraland.api.adapter import METADATA_FILE, PEFT_CONFIG_FILE, AdapterMetadata
from loraland.evaluation.scoring import Variant
from loraland.settings import Settings
from loraland.storage import StorageError, resolve


@dataclass(frozen=True)
class AdapterSource:
    uri: str
    path: Path
    name: str
    metadata: AdapterMetadata | None


def open_adapter(uri: str, settings: Settings) -> AdapterSource:
    path = resolve(uri, settings)
    if not (path / PEFT_CONFIG_FILE).is_file():
        raise StorageError(
            uri, f"{path} has no {PEFT_CONFIG_FILE}", "is this a PEFT adapter directory?"
        )
    metadata = None
    if (path / METADATA_FILE).is_file():
        try:
            metadata = AdapterMetadata.model_validate(
                json.loads((path / METADATA_FILE).read_text())
            )
        except (ValueError, OSError) as exc:
            raise StorageError(uri, f"unreadable {METADATA_FILE}: {exc}") from None
    name = metadata.name if metadata else path.name
    return AdapterSource(uri=uri, path=path, name=name, metadata=metadata)


def attach_adapters(model: Any, adapters: list[AdapterSource]) -> tuple[Any, list[Variant]]:
    """Wrap ``model`` in a PeftModel holding every adapter; return it and one Variant each."""
    from peft import PeftModel

    variants: list[Variant] = []
    labels: set[str] = {"base"}
    for index, adapter in enumerate(adapters):
        internal = f"a{index}"
        try:
            with warnings.catch_warnings():
                # peft calls a transformers property deprecated in v5; nothing for users to do.
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                if index == 0:
                    model = PeftModel.from_pretrained(
                        model, str(adapter.path), adapter_name=internal
                    )
                else:
                    model.load_adapter(str(adapter.path), adapter_name=internal)
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                adapter.uri, f"cannot load the adapter onto the base model: {first}"
            ) from None
        label = adapter.name if adapter.name not in labels else f"{adapter.name}#{index}"
        labels.add(label)
        variants.append(Variant(label=label, uri=adapter.uri, adapter=internal))
    model.eval()
    return model, variants
