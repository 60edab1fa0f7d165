"""How each serving runtime is started and told about adapters (pure).

Every runtime learns the adapter list from the same ConfigMap, mounted at
:data:`ADAPTERS_DIR`; the kubelet refreshes the file in place, so adapter changes reach
every replica without a restart.

``builtin`` (``loraland serve``) watches that file itself and reports each adapter's state
at ``GET /admin/adapters``.

``vllm`` and ``lorax`` get a sidecar, the adapter agent (``loraland agent``, see
:mod:`loraland.agent`): it watches the file, stages each adapter from any URI loraland
reads into a volume both containers mount, loads it into the server in its own pod
(vLLM: ``POST /v1/load_lora_adapter``; LoRAX: a one-token request naming the staged path,
``adapter_source=local``), unloads removed ones, and reports the states at its own
``GET /admin/adapters`` (the builtin server's shape). Its readiness probe answers 200
only once every required adapter is loaded, so a new or restarted pod gets no traffic
before its adapters are there.

Versions, images and the pinned CLI tables live in :mod:`loraland.controller.upstream`;
what a runtime cannot run is decided by :mod:`loraland.controller.runtimerules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.runtimerules import (
    effective_max_lora_rank,
    format_problems,
    runtime_problems,
)
from loraland.controller.upstream import LORAX_HUB_CACHE_ENV, VLLM_RUNTIME_LORA_ENV
from loraland.settings import PVC_MOUNT_ROOT
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri

ADAPTERS_DIR = "/etc/loraland/adapters"
ADAPTERS_FILE_NAME = "adapters.yaml"
#: The volume the agent stages adapters into; the server container mounts it read-only.
STAGE_DIR = "/var/lib/loraland/stage"
CACHE_DIR = "/var/cache/loraland"
LORAX_PORT = 80
VLLM_PORT = 8000
AGENT_PORT = 8090
#: vLLM keeps this many adapters in host memory (``--max-cpu-loras``), like the builtin
#: server's host tier; the GPU slots (``--max-loras``) default to the builtin's 8.
DEFAULT_LOADED_ADAPTERS = 8
DEFAULT_HOST_ADAPTERS = 64

AdminKind = Literal["builtin", "agent"]


class RuntimeSpecError(ValueError):
    """A spec this runtime cannot serve; the message names the field."""


@dataclass(frozen=True)
class AgentPlan:
    """The adapter agent sidecar's arguments (vLLM and LoRAX pods)."""

    args: list[str]
    port: int = AGENT_PORT


@dataclass(frozen=True)
class RuntimePlan:
    image: str
    command: list[str] | None
    args: list[str]
    port: int
    grpc_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    admin: AdminKind = "builtin"
    agent: AgentPlan | None = None

    @property
    def admin_port(self) -> int:
        """Where the operator reads per-adapter states: the server, or its agent."""
        return self.agent.port if self.agent is not None else self.port


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


def check(spec: AdapterDeploymentSpec, known_ranks: Mapping[str, int] | None = None) -> None:
    """Raise :class:`RuntimeSpecError` naming every field the runtime cannot run."""
    problems = runtime_problems(spec, known_ranks)
    if problems:
        raise RuntimeSpecError(format_problems(problems))


def plan(
    spec: AdapterDeploymentSpec,
    config: OperatorConfig,
    known_ranks: Mapping[str, int] | None = None,
) -> RuntimePlan:
    """Image, arguments, ports and adapter wiring of the spec's runtime.

    ``known_ranks`` (adapter name -> LoRA rank, where the operator knows it) sizes
    ``--max-lora-rank`` when ``serving.maxLoraRank`` is unset.
    """
    check(spec, known_ranks)
    ranks = dict(known_ranks or {})
    s = spec.serving
    gpu = spec.resources.gpus > 0
    max_rank = effective_max_lora_rank(spec, ranks)
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
        if s.max_loaded_adapters is not None and s.max_loaded_adapters > DEFAULT_HOST_ADAPTERS:
            host_adapters = s.max_loaded_adapters  # the server needs host >= loaded
        args += _flag_pairs(
            [
                ("--max-batch-size", s.max_batch_size),
                ("--max-input-tokens", s.max_input_tokens),
                ("--max-total-tokens", s.max_total_tokens),
                ("--max-concurrent-requests", s.max_concurrent_requests),
                ("--max-loaded-adapters", s.max_loaded_adapters),
                ("--max-host-adapters", host_adapters),
                ("--max-lora-rank", max_rank),
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
        )

    model = external_ref(spec.base_model.uri, "spec.baseModel.uri", spec.runtime)
    revision = spec.base_model.revision or model.revision
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
            image=spec.image or config.lorax_image,
            command=None,
            args=args,
            port=LORAX_PORT,
            # The image's HUGGINGFACE_HUB_CACHE=/data wins over HF_HOME: point it at the
            # cache volume, or every download lands in the container's own layer.
            env={LORAX_HUB_CACHE_ENV: f"{CACHE_DIR}/huggingface/hub"},
            admin="agent",
            agent=AgentPlan(_agent_args("lorax", LORAX_PORT, None)),
        )

    loras = s.max_loaded_adapters or DEFAULT_LOADED_ADAPTERS
    args = ["--model", model.ref, "--port", str(VLLM_PORT), "--enable-lora"]
    if revision:
        args += ["--revision", revision]
    args += _flag_pairs(
        [
            # vLLM's own default is one adapter per batch: never leave it to that.
            ("--max-loras", loras),
            ("--max-cpu-loras", max(loras, DEFAULT_HOST_ADAPTERS)),
            ("--max-lora-rank", max_rank),
            ("--max-model-len", s.max_total_tokens),
            ("--max-num-seqs", s.max_batch_size),
        ]
    )
    return RuntimePlan(
        image=spec.image or config.vllm_image,
        command=None,
        args=args,
        port=VLLM_PORT,
        env={VLLM_RUNTIME_LORA_ENV: "True"},
        admin="agent",
        agent=AgentPlan(_agent_args("vllm", VLLM_PORT, max_rank)),
    )


def _agent_args(runtime: str, server_port: int, max_rank: int | None) -> list[str]:
    args = [
        "agent",
        "--runtime",
        runtime,
        "--server-url",
        f"http://127.0.0.1:{server_port}",
        "--adapters-file",
        f"{ADAPTERS_DIR}/{ADAPTERS_FILE_NAME}",
        "--stage-dir",
        STAGE_DIR,
        "--port",
        str(AGENT_PORT),
    ]
    if max_rank is not None:
        args += ["--max-lora-rank", str(max_rank)]
    return args
