"""FineTuneJob: the spec a user writes, the trainer runs and the operator reconciles.

These models are the one source of truth for ``FineTuneJob.spec``: ``loraland finetune``
validates a job file with them, and the operator generates the CRD's openAPIV3Schema
from :func:`pydantic.BaseModel.model_json_schema`. So every field keeps a JSON-schema
friendly type (str, int, float, bool, lists, string-keyed dicts, Literal enums), a
description, a default and its bounds. Field names are camelCase on the wire (as
Kubernetes spells them) and snake_case in Python; both are accepted on input. Unknown
fields are rejected, so a typo such as ``maxStep`` fails naming the field instead of
being ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "loraland.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "FineTuneJob"

Quantization = Literal["none", "4bit", "8bit"]
Scheduler = Literal["linear", "cosine", "constant"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
DataFormat = Literal["auto", "jsonl", "csv", "parquet"]
#: The LoRA Land metric family (see loraland.evaluation.metrics).
Metric = Literal["accuracy", "rouge_l", "last_number", "regression"]

_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"


class SpecError(ValueError):
    """A job file or flag that does not describe a valid FineTuneJob spec."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )


class BaseModelSpec(_Model):
    uri: str = Field(
        min_length=1,
        description="Base model: builtin://NAME, a path, pvc://CLAIM/PATH, hf://ORG/NAME[@REV] "
        "or s3://BUCKET/PREFIX.",
    )
    revision: str | None = Field(
        default=None, description="Revision of an hf:// model (overrides @REV in the URI)."
    )
    secret_ref: str | None = Field(
        default=None,
        description="Name of a Secret whose keys (HF_TOKEN, AWS_*) become the pod's environment.",
    )


class DatasetSpec(_Model):
    uri: str | None = Field(
        default=None,
        description="Training data: a .jsonl/.csv/.parquet file, a directory holding "
        "<split>.jsonl|csv|parquet, pvc://, s3:// or hf://ORG/NAME[@REV]. Optional when "
        "`task` names a synthetic or hub task.",
    )
    task: str | None = Field(
        default=None,
        description="A task from the registry (`loraland eval --list-tasks`). It supplies the "
        "prompt template, fields and metric, and the data unless `uri` is given.",
    )
    format: DataFormat = Field(default="auto", description="File format; auto uses the suffix.")
    subset: str | None = Field(
        default=None, description="Configuration of an hf:// dataset (e.g. 'main' for gsm8k)."
    )
    split: str = Field(default="train", description="Split to train on (hf:// or directories).")
    eval_split: str | None = Field(
        default=None,
        description="Split to evaluate on; without it, evalFraction of the rows are held out.",
    )
    eval_fraction: float = Field(
        default=0.1, ge=0.0, le=0.5, description="Share of rows held out for evaluation."
    )
    prompt_template: str | None = Field(
        default=None,
        description="Prompt with {field} placeholders, e.g. 'Review: {text}\\nSentiment:'. "
        "Defaults to the task's template, else '{<inputField>}'.",
    )
    input_field: str | None = Field(
        default=None, description="Field used as the prompt when there is no promptTemplate."
    )
    output_field: str | None = Field(
        default=None, description="Field holding the completion to learn (default 'output')."
    )
    chat_template: bool = Field(
        default=False,
        description="Wrap the prompt as a user message with the base model's chat template.",
    )
    max_samples: int | None = Field(
        default=None, ge=1, description="Use at most this many rows (after a seeded shuffle)."
    )

    @model_validator(mode="after")
    def _has_source(self) -> DatasetSpec:
        if self.uri is None and self.task is None:
            raise ValueError("set dataset.uri or dataset.task")
        return self


class LoraSpec(_Model):
    rank: int = Field(default=8, ge=1, le=1024, description="LoRA rank r.")
    alpha: int = Field(default=16, ge=1, le=4096, description="LoRA alpha (scale alpha/r).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(
        default=None,
        description="Module names to adapt; default per architecture (q_proj,v_proj for "
        "Llama-like models, as LoRA Land).",
    )
    quantization: Quantization = Field(
        default="none", description="QLoRA: load the base model in 4 or 8 bits (CUDA only)."
    )


class TrainingSpec(_Model):
    max_steps: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Optimizer steps; overrides epochs."
    )
    epochs: float | None = Field(
        default=None, gt=0, le=1000, description="Passes over the data (default 1)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1.0, description="Peak learning rate.")
    scheduler: Scheduler = Field(default="linear", description="Decay after warmup.")
    warmup_ratio: float = Field(default=0.03, ge=0.0, le=1.0, description="Share of warmup steps.")
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, ge=0.0, description="Clip norm; 0 disables.")
    batch_size: int = Field(default=8, ge=1, le=4096, description="Examples per micro-batch.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=4096, description="Micro-batches per optimizer step."
    )
    max_seq_length: int = Field(
        default=512, ge=8, le=1_048_576, description="Longer examples are truncated (counted)."
    )
    completion_only_loss: bool = Field(
        default=True, description="Learn only the completion: prompt tokens are masked out."
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Trade compute for memory on large models."
    )
    precision: Precision = Field(
        default="auto", description="auto: bf16 on a GPU that supports it, fp32 on CPU."
    )
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Seeds data order and init.")
    checkpoint_every_steps: int = Field(
        default=100, ge=0, description="Save a resumable checkpoint every N steps (0: never)."
    )
    log_every_steps: int = Field(default=1, ge=1, description="Progress line every N steps.")

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingSpec:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set training.maxSteps or training.epochs, not both")
        return self


class EvaluationSpec(_Model):
    task: str | None = Field(
        default=None, description="Registry task to score on (default: dataset.task)."
    )
    metric: Metric | None = Field(
        default=None,
        description="Metric on the held-out rows when there is no task (default accuracy).",
    )
    max_samples: int = Field(default=100, ge=1, le=1_000_000, description="Samples to score.")
    compare_base: bool = Field(default=True, description="Also score the base model.")
    max_new_tokens: int | None = Field(
        default=None, ge=1, le=8192, description="Generation budget (default: the task's)."
    )
    batch_size: int = Field(default=16, ge=1, le=1024, description="Prompts per generate call.")


class OutputSpec(_Model):
    uri: str = Field(
        min_length=1, description="Where the adapter goes: a path, pvc://CLAIM/PATH or s3://."
    )
    adapter_name: str | None = Field(
        default=None,
        pattern=_NAME_PATTERN,
        description="Name recorded in loraland.json (default: the job name).",
    )


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class ResourcesSpec(_Model):
    gpus: int = Field(default=1, ge=0, le=64, description="nvidia.com/gpu for the pod.")
    cpu: str | None = Field(default=None, pattern=_QUANTITY_PATTERN, description="CPU request.")
    memory: str | None = Field(
        default=None, pattern=_QUANTITY_PATTERN, description="Memory request."
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class DeployToSpec(_Model):
    adapter_deployment: str = Field(
        pattern=_NAME_PATTERN, description="AdapterDeployment that should serve the adapter."
    )
    min_gain: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Deploy only if the adapter beats its base model by at least this much "
        "(scores are 0..1: 0.05 is 5 points); needs evaluation with compareBase.",
    )


class FineTuneJobSpec(_Model):
    """``FineTuneJob.spec``. The trainer uses the first six parts; the rest is the operator's."""

    base_model: BaseModelSpec
    dataset: DatasetSpec
    lora: LoraSpec = Field(default_factory=LoraSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec | None = Field(
        default=None, description="Score the adapter (and the base) after training."
    )
    output: OutputSpec
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    image: str | None = Field(default=None, description="Trainer image (default: operator's).")
    backoff_limit: int = Field(default=2, ge=0, le=100, description="Pod retries of the Job.")
    deploy_to: DeployToSpec | None = None

    def training_fingerprint_input(self) -> dict[str, Any]:
        """What determines the trained weights; a re-run with the same values resumes."""
        return self.model_dump(
            mode="json",
            include={"base_model", "dataset", "lora", "training"},
            exclude={"training": {"checkpoint_every_steps", "log_every_steps"}},
        )


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None


class FineTuneJob(BaseModel):
    """A whole manifest, as ``kubectl`` would take it. ``status`` is the operator's."""

    model_config = ConfigDict(extra="forbid")

    api_version: Literal["loraland.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FineTuneJob"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FineTuneJobSpec
    status: dict[str, Any] | None = None


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the field by its wire (camelCase) path."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
        where = f"{prefix}.{path}" if prefix and path else (prefix or path)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def parse_job_document(document: object) -> tuple[str | None, FineTuneJobSpec]:
    """Accept a full FineTuneJob manifest or a bare spec; return (metadata.name, spec)."""
    if not isinstance(document, dict):
        raise SpecError(f"a job file holds a mapping, not {type(document).__name__}")
    try:
        if "kind" in document or "apiVersion" in document or "spec" in document:
            job = FineTuneJob.model_validate(document)
            return job.metadata.name, job.spec
        return None, FineTuneJobSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None
