"""A study's matrix: base models x tasks x variants -> one FineTuneJob spec per cell (pure).

Run names are a function of the study's and the cell's names only (``<study>-<base>-
<task>[-<variant>]``, cut and hashed when longer than 63 characters), so the operator
finds the jobs it made before a restart and the local runner finds finished runs.
Runs are ordered variant-major within task within base, which is also the order the
operator starts them in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from loraland.api.finetunejob import FineTuneJobSpec
from loraland.api.study import (
    FineTuneStudySpec,
    Problem,
    StudyBaseModel,
    StudyTask,
    StudyVariant,
    pydantic_problems,
)
from loraland.api.studystatus import StudyTable, TableBase, TableReference

NAME_LIMIT = 63


def fit(name: str, limit: int = NAME_LIMIT) -> str:
    """``name`` if it fits, else a cut name and a short hash of the whole (deterministic)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class Run:
    name: str
    base: StudyBaseModel
    task: StudyTask
    variant: StudyVariant | None
    spec: FineTuneJobSpec


def run_name(study: str, base: str, task: str, variant: str | None) -> str:
    parts = [study, base, task] + ([variant] if variant else [])
    return fit("-".join(parts))


def _dataset(spec: FineTuneStudySpec, task: StudyTask) -> dict[str, Any]:
    defaults = spec.template.dataset.model_dump(by_alias=True, exclude_none=True)
    own = (
        task.dataset.model_dump(by_alias=True, exclude_unset=True)
        if task.dataset is not None
        else {"task": task.task}
    )
    return {**defaults, **own}


def _training(spec: FineTuneStudySpec, variant: StudyVariant | None) -> dict[str, Any]:
    training = spec.template.training.model_dump(by_alias=True, exclude_none=True)
    if variant is None:
        return training
    override = variant.training.model_dump(by_alias=True, exclude_none=True)
    # A variant that counts in steps replaces the template's epochs, and vice versa.
    if "maxSteps" in override:
        training.pop("epochs", None)
    if "epochs" in override:
        training.pop("maxSteps", None)
    return {**training, **override}


def _lora(spec: FineTuneStudySpec, variant: StudyVariant | None) -> dict[str, Any]:
    lora = spec.template.lora.model_dump(by_alias=True, exclude_none=True)
    if variant is not None:
        lora.update(variant.lora.model_dump(by_alias=True, exclude_none=True))
    return lora


def cell_document(
    study: str,
    spec: FineTuneStudySpec,
    base: StudyBaseModel,
    task: StudyTask,
    variant: StudyVariant | None,
) -> dict[str, Any]:
    """The FineTuneJob spec of one cell, as a wire dict (validated by :func:`expand`)."""
    name = run_name(study, base.name, task.name, variant.name if variant else None)
    template = spec.template
    base_model: dict[str, Any] = {"uri": base.uri}
    if base.revision:
        base_model["revision"] = base.revision
    if base.secret_ref:
        base_model["secretRef"] = base.secret_ref
    doc: dict[str, Any] = {
        "baseModel": base_model,
        "dataset": _dataset(spec, task),
        "lora": _lora(spec, variant),
        "training": _training(spec, variant),
        "evaluation": template.evaluation.model_dump(by_alias=True, exclude_none=True),
        "output": {"uri": f"{template.output.uri.rstrip('/')}/{name}", "adapterName": name},
        "resources": template.resources.model_dump(by_alias=True, exclude_none=True),
        "backoffLimit": template.backoff_limit,
    }
    if template.image:
        doc["image"] = template.image
    return doc


def _cells(
    spec: FineTuneStudySpec,
) -> list[tuple[StudyBaseModel, StudyTask, StudyVariant | None]]:
    variants: list[StudyVariant | None] = list(spec.variants) or [None]
    return [(b, t, v) for b in spec.base_models for t in spec.tasks for v in variants]


def matrix_problems(study: str, spec: FineTuneStudySpec) -> list[Problem]:
    """Cells whose FineTuneJob spec would be invalid, named by the parts that made them."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for base, task, variant in _cells(spec):
        where = f"spec (base {base.name}, task {task.name}" + (
            f", variant {variant.name})" if variant else ")"
        )
        name = run_name(study, base.name, task.name, variant.name if variant else None)
        if name in seen:
            problems.append((where, f"run name {name} repeats that of {seen[name]}"))
        seen[name] = where
        try:
            FineTuneJobSpec.model_validate(cell_document(study, spec, base, task, variant))
        except ValidationError as exc:
            problems += [(f"{where}.{path}", why) for path, why in pydantic_problems(exc, "")]
    return problems


def expand(study: str, spec: FineTuneStudySpec) -> list[Run]:
    """Every cell of the matrix with its FineTuneJob spec; raises on an invalid cell."""
    runs = []
    for base, task, variant in _cells(spec):
        doc = cell_document(study, spec, base, task, variant)
        runs.append(
            Run(
                name=run_name(study, base.name, task.name, variant.name if variant else None),
                base=base,
                task=task,
                variant=variant,
                spec=FineTuneJobSpec.model_validate(doc),
            )
        )
    return runs


def empty_table(study: str, spec: FineTuneStudySpec) -> StudyTable:
    """The table's axes and references; rows are added by whoever knows the runs' state."""
    return StudyTable(
        study=study,
        bases=[TableBase(name=b.name, uri=b.uri, labels=dict(b.labels)) for b in spec.base_models],
        tasks=[t.name for t in spec.tasks],
        variants=[v.name for v in spec.variants],
        references=[
            TableReference(name=r.name, source=r.source, scores=dict(r.scores))
            for r in spec.references
        ],
        runs=[],
    )
