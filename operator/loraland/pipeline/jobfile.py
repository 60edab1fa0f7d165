"""Reading a job file and applying command-line overrides to it.

A job file is a whole FineTuneJob manifest or a bare spec, in YAML or JSON. Overrides
are dotted wire paths (``training.maxSteps=20``) applied to the raw document before
validation, so a bad override is reported like a bad file: naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loraland.api.finetunejob import FineTuneJobSpec, SpecError, parse_job_document
from loraland.validation import FINETUNEJOB, Meta


def read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the job file: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{path}: a job file holds a mapping (a FineTuneJob or its spec)")
    return document


def spec_part(document: dict[str, Any]) -> dict[str, Any]:
    """The mapping overrides apply to: ``spec`` of a manifest, or the bare spec itself."""
    if "spec" in document or "kind" in document:
        spec = document.setdefault("spec", {})
        if not isinstance(spec, dict):
            raise SpecError("spec: must be a mapping")
        return spec
    return document


def set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise SpecError(f"{dotted}: '{key}' is not a mapping")
        node = child
    node[keys[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``path=value`` with the value read as YAML (numbers, booleans, lists)."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise SpecError(f"--set {text!r}: write FIELD.PATH=VALUE, e.g. training.maxSteps=20")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def build_spec(
    document: dict[str, Any], overrides: list[tuple[str, Any]]
) -> tuple[str | None, FineTuneJobSpec]:
    target = spec_part(document)
    for path, value in overrides:
        set_path(target, path, value)
    name, spec = parse_job_document(document)
    # The operator's checks (loraland.validation): a pod refuses what the webhook would.
    checked = FINETUNEJOB(spec.model_dump(mode="json", by_alias=True), Meta(name=name))
    if not checked.ok:
        raise SpecError(checked.message)
    return name, spec
