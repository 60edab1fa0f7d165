"""AdapterDeployment: one base model served with many LoRA adapters.

``AdapterDeployment.spec`` as a pydantic model, the one source of truth for the CRD schema
(see :mod:`loraland.api.crd`) and for the operator's checks. Field names are camelCase on
the wire and snake_case in Python. Unknown fields are rejected so typos name the field.

``runtime`` picks the inference server: ``builtin`` (``loraland serve``, the default),
``lorax`` (Predibase LoRAX) or ``vllm`` (vLLM's OpenAI server). The adapter list is
delivered to running pods without restarting them (see loraland.controller.runtimes for
how each runtime learns about it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from loraland.api.finetunejob import (
    API_GROUP,
    BaseModelSpec,
    ResourcesSpec,
    format_validation_error,
)

KIND = "AdapterDeployment"
API_VERSION = f"{API_GROUP}/v1alpha1"

Runtime = Literal["builtin", "lorax", "vllm"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]

#: Adapter names travel in URLs, file names and the servers' ``model`` field.
ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class AdapterRef(_Model):
    """An adapter to serve: its URI, or the FineTuneJob that produced it."""

    name: str = Field(
        pattern=ADAPTER_NAME_PATTERN,
        description="Name clients use (TGI adapter_id, OpenAI model).",
    )
    uri: str | None = Field(
        default=None, min_length=1, description="pvc://, s3://, hf:// or a path in the pod."
    )
    from_fine_tune_job: str | None = Field(
        default=None,
        pattern=_K8S_NAME_PATTERN,
        description="A FineTuneJob in this namespace; its status.adapter.uri once it succeeded.",
    )
    # None rather than a default of true: the API server would write the default into
    # every stored adapter entry, and tools comparing specs would see a change.
    required: bool | None = Field(
        default=None,
        description=(
            "vLLM/LoRAX: a new pod is Ready only once every required adapter is loaded "
            "into its server (default: true)."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> AdapterRef:
        if (self.uri is None) == (self.from_fine_tune_job is None):
            raise ValueError("set exactly one of uri and fromFineTuneJob")
        return self


class ServingSpec(_Model):
    """Server limits; unset fields keep the runtime's own defaults."""

    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_input_tokens: int | None = Field(default=None, ge=1, le=1_048_576)
    max_total_tokens: int | None = Field(default=None, ge=2, le=1_048_576)
    max_concurrent_requests: int | None = Field(default=None, ge=1, le=100_000)
    max_loaded_adapters: int | None = Field(
        default=None, ge=1, le=4096, description="Adapters resident on the GPU at once."
    )
    max_lora_rank: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description=(
            "Largest rank served (vLLM: one of 1, 8, 16, 32, 64, 128, 256, 320, 512). "
            "Default: from the ranks of fromFineTuneJob adapters."
        ),
    )

    @model_validator(mode="after")
    def _limits(self) -> ServingSpec:
        if (
            self.max_input_tokens is not None
            and self.max_total_tokens is not None
            and self.max_input_tokens >= self.max_total_tokens
        ):
            raise ValueError("serving.maxInputTokens must be below serving.maxTotalTokens")
        return self


class ServiceSpec(_Model):
    type: ServiceType = Field(default="ClusterIP", description="Kubernetes Service type.")
    port: int = Field(default=80, ge=1, le=65535, description="Service port for HTTP.")


class AdapterDeploymentSpec(_Model):
    """``AdapterDeployment.spec``."""

    base_model: BaseModelSpec
    adapters: list[AdapterRef] = Field(
        default_factory=list, max_length=1000, description="Adapters to serve; names unique."
    )
    runtime: Runtime = Field(default="builtin", description="Inference server.")
    replicas: int = Field(default=1, ge=0, le=1000, description="Server pods.")
    serving: ServingSpec = Field(default_factory=ServingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    image: str | None = Field(default=None, description="Server image (default: per runtime).")
    service: ServiceSpec = Field(default_factory=ServiceSpec)

    @model_validator(mode="after")
    def _unique_names(self) -> AdapterDeploymentSpec:
        names = [a.name for a in self.adapters]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"adapters: names must be unique; repeated: {', '.join(repeated)}")
        return self


class AdapterDeploymentSpecError(ValueError):
    """A spec the operator refuses; the message names the field."""


def parse_adapter_deployment_spec(spec: object) -> AdapterDeploymentSpec:
    try:
        return AdapterDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        raise AdapterDeploymentSpecError(format_validation_error(exc, prefix="spec")) from None
