"""FineTuneStudy: the LoRA Land experiment as one resource.

A study is a matrix: base models x tasks (x LoRA variants), each cell one FineTuneJob
built from a shared ``template``. The operator fans it out into owned FineTuneJobs and
``loraland study -f`` runs the same matrix on one machine; both expand it with
:func:`loraland.study.matrix.expand`, so a cell trains the same way in both places.

``references`` are scores from elsewhere (the LoRA Land paper's GPT-4 column, say): shown
beside the runs, never trained. ``deploy`` puts the best adapter per task (for one base
model, or the best base on average) into an AdapterDeployment, only where it beats its
base model by ``minGain``.

:func:`study_problems` is the one validation entry point: it returns ``(field path,
reason)`` pairs, empty when the study is valid, so the operator (status), the admission
webhook and the CLI report the same problems in the same words.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from loraland.api.adapterdeployment import Runtime
from loraland.api.finetunejob import (
    API_GROUP,
    DataFormat,
    DatasetSpec,
    EvaluationSpec,
    LoraSpec,
    Quantization,
    ResourcesSpec,
    Scheduler,
    TrainingSpec,
)

KIND = "FineTuneStudy"
API_VERSION = f"{API_GROUP}/v1alpha1"

#: Names of bases, tasks and variants become parts of FineTuneJob names and labels.
_PART_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
_K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

Problem = tuple[str, str]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class StudyBaseModel(_Model):
    """One row of the matrix."""

    name: str = Field(pattern=_PART_PATTERN, description="Short name (part of job names).")
    uri: str = Field(min_length=1, description="Base model URI, as in FineTuneJob.baseModel.")
    revision: str | None = Field(default=None, description="Revision of an hf:// model.")
    secret_ref: str | None = Field(default=None, description="Secret for the pod's environment.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Free labels the report groups by, e.g. family: mistral, size: 7b, "
        "instruct: 'true'.",
    )


class StudyTask(_Model):
    """One column of the matrix: a registry task, or a dataset block as in FineTuneJob."""

    name: str = Field(pattern=_PART_PATTERN, description="Short name (part of job names).")
    task: str | None = Field(
        default=None, description="Registry task (`loraland tasks`); shorthand for dataset.task."
    )
    dataset: DatasetSpec | None = Field(
        default=None, description="A full FineTuneJob dataset block (overrides `task`)."
    )


class LoraOverride(_Model):
    """Fields of ``lora`` a variant changes; unset fields keep the template's."""

    rank: int | None = Field(default=None, ge=1, le=1024)
    alpha: int | None = Field(default=None, ge=1, le=4096)
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None
    quantization: Quantization | None = None


class TrainingOverride(_Model):
    """Fields of ``training`` a variant changes; unset fields keep the template's."""

    max_steps: int | None = Field(default=None, ge=1, le=10_000_000)
    epochs: float | None = Field(default=None, gt=0, le=1000)
    learning_rate: float | None = Field(default=None, gt=0, le=1.0)
    scheduler: Scheduler | None = None
    warmup_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    gradient_accumulation_steps: int | None = Field(default=None, ge=1, le=4096)
    max_seq_length: int | None = Field(default=None, ge=8, le=1_048_576)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class StudyVariant(_Model):
    """Named overrides of the LoRA / training block: the study compares LoRA settings too."""

    name: str = Field(pattern=_PART_PATTERN, description="Short name (part of job names).")
    lora: LoraOverride = Field(default_factory=LoraOverride)
    training: TrainingOverride = Field(default_factory=TrainingOverride)


class DatasetDefaults(_Model):
    """Dataset fields every task shares unless its own dataset block sets them."""

    format: DataFormat | None = None
    split: str | None = None
    eval_fraction: float | None = Field(default=None, ge=0.0, le=0.5)
    chat_template: bool | None = None
    max_samples: int | None = Field(default=None, ge=1)


class StudyOutput(_Model):
    uri: str = Field(
        min_length=1,
        description="Prefix: each run writes its adapter to <uri>/<run name> (pvc://, s3://, "
        "a path).",
    )


class StudyTemplate(_Model):
    """The FineTuneJob spec fields every run shares."""

    dataset: DatasetDefaults = Field(default_factory=DatasetDefaults)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="How each run is scored; compareBase gives the gains the study reports.",
    )
    output: StudyOutput
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    image: str | None = Field(default=None, description="Trainer image (default: operator's).")
    backoff_limit: int = Field(default=2, ge=0, le=100, description="Pod retries of each Job.")


class StudyReference(_Model):
    """External scores per task, shown beside the runs and never trained."""

    name: str = Field(min_length=1, max_length=63, description="e.g. gpt-4")
    source: str | None = Field(default=None, description="Where the numbers come from.")
    scores: dict[str, float] = Field(
        default_factory=dict, description="Task name -> score on the task's metric."
    )


class StudyDeploy(_Model):
    """Serve the winners: the best adapter per task, for one base model."""

    adapter_deployment: str = Field(
        pattern=_K8S_NAME_PATTERN, description="AdapterDeployment the study creates and owns."
    )
    base_model: str = Field(
        default="best",
        min_length=1,
        description="A baseModels[].name, or 'best': the base with the highest mean score.",
    )
    min_gain: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Deploy an adapter only if it beats its base model by at least this much "
        "(scores are 0..1, so 0.05 is 5 points).",
    )
    runtime: Runtime = Field(default="builtin", description="Inference server.")
    replicas: int = Field(default=1, ge=0, le=1000)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)


class FineTuneStudySpec(_Model):
    """``FineTuneStudy.spec``."""

    base_models: list[StudyBaseModel] = Field(min_length=1, max_length=100)
    tasks: list[StudyTask] = Field(min_length=1, max_length=500)
    variants: list[StudyVariant] = Field(
        default_factory=list, max_length=50, description="LoRA settings to compare (optional)."
    )
    template: StudyTemplate
    references: list[StudyReference] = Field(default_factory=list, max_length=20)
    max_parallel: int = Field(
        default=4, ge=1, le=1000, description="FineTuneJobs running at once (edits apply)."
    )
    retries: int = Field(
        default=0, ge=0, le=10, description="Times a failed run is started again from scratch."
    )
    deploy: StudyDeploy | None = None


class StudySpecError(ValueError):
    """A study file the CLI cannot run; the message names each field."""


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for part in loc:
        if part == "function-after":
            continue
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            else:
                parts.append(f"[{part}]")
        else:
            parts.append(str(part))
    return ".".join(parts)


def pydantic_problems(exc: ValidationError, prefix: str) -> list[Problem]:
    out = []
    for err in exc.errors():
        reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        out.append((_loc(err["loc"], prefix), reason.removeprefix("Value error, ")))
    return out


def _duplicates(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def semantic_problems(spec: FineTuneStudySpec) -> list[Problem]:
    """What the schema cannot say: unique names, references and deploy naming real parts."""
    problems: list[Problem] = []
    for field, items in (
        ("baseModels", spec.base_models),
        ("tasks", spec.tasks),
        ("variants", spec.variants),
        ("references", spec.references),
    ):
        repeated = _duplicates([i.name for i in items])
        if repeated:
            problems.append((f"spec.{field}", f"names must be unique; repeated: {repeated}"))
    for i, task in enumerate(spec.tasks):
        if task.task is None and task.dataset is None:
            problems.append((f"spec.tasks[{i}]", "set task or dataset"))
    task_names = {t.name for t in spec.tasks}
    for i, ref in enumerate(spec.references):
        unknown = sorted(set(ref.scores) - task_names)
        if unknown:
            problems.append(
                (f"spec.references[{i}].scores", f"no such task in spec.tasks: {unknown}")
            )
    if spec.deploy is not None:
        bases = {b.name for b in spec.base_models}
        if spec.deploy.base_model != "best" and spec.deploy.base_model not in bases:
            problems.append(
                (
                    "spec.deploy.baseModel",
                    f"'{spec.deploy.base_model}' is not 'best' or one of {sorted(bases)}",
                )
            )
    return problems


def study_problems(raw: object, prefix: str = "spec") -> list[Problem]:
    """Every problem of a raw ``FineTuneStudy.spec`` as (field path, reason); [] if valid.

    Problems of the FineTuneJobs the matrix expands to are found by
    :func:`loraland.study.matrix.matrix_problems` (it needs the expansion).
    """
    try:
        spec = FineTuneStudySpec.model_validate(raw)
    except ValidationError as exc:
        return pydantic_problems(exc, prefix)
    return semantic_problems(spec)


class FineTuneStudy(BaseModel):
    """A whole manifest, as a study file holds it."""

    model_config = ConfigDict(extra="forbid")

    api_version: Literal["loraland.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FineTuneStudy"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any]
    status: dict[str, Any] | None = None
