"""How each serving runtime is started and told about adapters (pure).

``builtin`` (``loraland serve``) watches an adapters file: the operator writes the list
into a ConfigMap mounted at :data:`ADAPTERS_DIR`, the kubelet refreshes the file in place,
and the server loads and unloads adapters without a restart. It reports each adapter's
state at ``GET /admin/adapters``.

``vllm`` (``vllm/vllm-openai``) starts with ``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; the operator loads and unloads adapters on
each ready pod through ``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` and
reads what is loaded from ``GET /v1/models``. A new or restarted pod serves the base
model until the operator's next poll loads its adapters.

``lorax`` (``ghcr.io/predibase/lorax``) loads an adapter on the first request that names
it (``adapter_id`` = the path or hub id below, ``adapter_source`` local or hub); there is
no list to push, so its adapter states stay Pending with the id clients should send.

vLLM and LoRAX read models from a path or a hub id, so their base model and adapters
must be ``hf://`` or ``pvc://`` (or a path inside the image); ``builtin://`` and ``s3://``
are loraland's own and refused with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.controller.config import OperatorConfig
from loraland.settings import PVC_MOUNT_ROOT
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri

ADAPTERS_DIR = "/etc/loraland/adapters"
ADAPTERS_FILE_NAME = "adapters.yaml"
LORAX_PORT = 80
VLLM_PORT = 8000

AdminKind = Literal["builtin", "vllm", "none"]


class RuntimeSpecError(ValueError):
    """A spec this runtime cannot serve; the message names the field."""


@dataclass(frozen=True)
class RuntimePlan:
    image: str
    command: list[str] | None
    args: list[str]
    port: int
    grpc_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    admin: AdminKind = "none"
    #: The pod needs the adapters ConfigMap (builtin reads it; others do not).
    mounts_adapters_file: bool = False


@dataclass(frozen=True)
class ModelRef:
    """How a third-party runtime names a model: a path in the pod or a hub id."""

    ref: str
    revision: str | None
    source: Literal["local", "hub"]


def external_ref(uri: str, where: str, runtime: str) -> ModelRef:
    try:
        parsed = parse_uri(uri)
    except StorageError as exc:
        raise RuntimeSpecError(f"{where}: {exc}") from None
    if parsed.scheme is Scheme.HF:
        return ModelRef(parsed.location, parsed.revision, "hub")
    if parsed.scheme is Scheme.PVC:
        path = f"{PVC_MOUNT_ROOT}/{parsed.location}" + (f"/{parsed.path}" if parsed.path else "")
        return ModelRef(path, None, "local")
    if parsed.scheme is Scheme.FILE:
        return ModelRef(parsed.location, None, "local")
    raise RuntimeSpecError(
        f"{where}: runtime {runtime} cannot load {parsed.scheme.value}:// URIs; "
        "use hf://ORG/NAME or pvc://CLAIM/PATH (or runtime: builtin)"
    )


def _flag_pairs(pairs: list[tuple[str, int | None]]) -> list[str]:
    out: list[str] = []
    for flag, value in pairs:
        if value is not None:
            out += [flag, str(value)]
    return out


def plan(spec: AdapterDeploymentSpec, config: OperatorConfig) -> RuntimePlan:
    """Image, arguments, ports and adapter wiring of the spec's runtime."""
    s = spec.serving
    gpu = spec.resources.gpus > 0
    if spec.runtime == "builtin":
        args = [
            "serve",
            "--base-model",
            spec.base_model.uri,
            "--adapters-file",
            f"{ADAPTERS_DIR}/{ADAPTERS_FILE_NAME}",
            "--host",
            "0.0.0.0",
            "--port",
            str(config.server_port),
            "--grpc-port",
            str(config.server_grpc_port),
        ]
        host_adapters = None
        if s.max_loaded_adapters is not None and s.max_loaded_adapters > 64:
            host_adapters = s.max_loaded_adapters  # the server needs host >= loaded
        args += _flag_pairs(
            [
                ("--max-batch-size", s.max_batch_size),
                ("--max-input-tokens", s.max_input_tokens),
                ("--max-total-tokens", s.max_total_tokens),
                ("--max-concurrent-requests", s.max_concurrent_requests),
                ("--max-loaded-adapters", s.max_loaded_adapters),
                ("--max-host-adapters", host_adapters),
                ("--max-lora-rank", s.max_lora_rank),
            ]
        )
        default_image = config.server_image if gpu else config.server_cpu_image
        return RuntimePlan(
            image=spec.image or default_image,
            command=["loraland"],
            args=args,
            port=config.server_port,
            grpc_port=config.server_grpc_port,
            admin="builtin",
            mounts_adapters_file=True,
        )

    model = external_ref(spec.base_model.uri, "spec.baseModel.uri", spec.runtime)
    revision = spec.base_model.revision or model.revision
    for i, adapter in enumerate(spec.adapters):
        if adapter.uri is not None:
            external_ref(adapter.uri, f"spec.adapters[{i}].uri", spec.runtime)
    if spec.runtime == "lorax":
        args = ["--model-id", model.ref, "--port", str(LORAX_PORT)]
        if revision:
            args += ["--revision", revision]
        args += _flag_pairs(
            [
                ("--max-input-length", s.max_input_tokens),
                ("--max-total-tokens", s.max_total_tokens),
                ("--max-concurrent-requests", s.max_concurrent_requests),
                ("--max-active-adapters", s.max_loaded_adapters),
            ]
        )
        return RuntimePlan(
            image=spec.image or config.lorax_image, command=None, args=args, port=LORAX_PORT
        )

    args = ["--model", model.ref, "--port", str(VLLM_PORT), "--enable-lora"]
    if revision:
        args += ["--revision", revision]
    args += _flag_pairs(
        [
            ("--max-loras", s.max_loaded_adapters),
            ("--max-lora-rank", s.max_lora_rank),
            ("--max-model-len", s.max_total_tokens),
            ("--max-num-seqs", s.max_batch_size),
        ]
    )
    return RuntimePlan(
        image=spec.image or config.vllm_image,
        command=None,
        args=args,
        port=VLLM_PORT,
        env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"},
        admin="vllm",
    )


def adapter_ref(uri: str, runtime: str) -> ModelRef:
    """What vLLM's ``lora_path`` / LoRAX's ``adapter_id`` is for an adapter URI."""
    return external_ref(uri, "adapter uri", runtime)
