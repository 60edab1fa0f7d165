"""AdapterDeployment -> Deployment, Service and adapters ConfigMap (pure builders).

The pod template is a function of everything in the spec *except* the adapter list
(and ``replicas``), so adding or removing an adapter never rolls the pods: the list
travels in the ConfigMap, a file the builtin server (or, for vLLM and LoRAX, the adapter
agent sidecar) watches. Two exceptions are unavoidable: an adapter on a
PersistentVolumeClaim no pod mounts yet needs a new volume, and on vLLM a known adapter
rank above the current ``--max-lora-rank`` needs a new argument; both roll the pods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from loraland.api.adapterdeployment import AdapterDeploymentSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.names import (
    adapterdeployment_labels,
    adapters_configmap_name,
    server_name,
    server_selector,
)
from loraland.controller.podspec import (
    Manifest,
    Owner,
    claims_of,
    placement,
    pvc_volumes,
    resource_requirements,
    secret_env_from,
    volume_group_security,
)
from loraland.controller.runtimes import (
    ADAPTERS_DIR,
    ADAPTERS_FILE_NAME,
    CACHE_DIR,
    STAGE_DIR,
    RuntimePlan,
)

SERVER_CONTAINER = "server"
AGENT_CONTAINER = "adapter-agent"


@dataclass(frozen=True)
class ResolvedAdapters:
    """Adapters with a URI (name -> uri), and those still waiting (name -> why)."""

    ready: Mapping[str, str]
    waiting: Mapping[str, str]


def resolve_adapters(
    spec: AdapterDeploymentSpec, jobs: Mapping[str, Mapping[str, Any] | None]
) -> ResolvedAdapters:
    """Turn ``fromFineTuneJob`` references into URIs using those jobs' status.

    ``jobs`` maps a FineTuneJob name to its ``status`` (None: no such job).
    """
    ready: dict[str, str] = {}
    waiting: dict[str, str] = {}
    for adapter in spec.adapters:
        if adapter.uri is not None:
            ready[adapter.name] = adapter.uri
            continue
        job = adapter.from_fine_tune_job or ""
        status = jobs.get(job)
        if status is None:
            waiting[adapter.name] = f"FineTuneJob {job} not found"
            continue
        uri = (status.get("adapter") or {}).get("uri")
        if status.get("phase") == "Succeeded" and uri:
            ready[adapter.name] = uri
        elif status.get("phase") == "Failed":
            waiting[adapter.name] = f"FineTuneJob {job} failed: {status.get('message', '')}".rstrip(
                ": "
            )
        else:
            waiting[adapter.name] = (
                f"waiting for FineTuneJob {job} ({status.get('phase') or 'Pending'})"
            )
    return ResolvedAdapters(ready=ready, waiting=waiting)


def optional_adapters(spec: AdapterDeploymentSpec) -> frozenset[str]:
    """Adapters marked ``required: false``: the agent's readiness does not wait for them."""
    return frozenset(a.name for a in spec.adapters if a.required is False)


def adapters_file(ready: Mapping[str, str], optional: frozenset[str] = frozenset()) -> str:
    """The adapters file the builtin server and the agent watch: a list of {name, uri}
    (plus ``required: false`` where set)."""
    entries: list[dict[str, object]] = []
    for name, uri in sorted(ready.items()):
        entry: dict[str, object] = {"name": name, "uri": uri}
        if name in optional:
            entry["required"] = False
        entries.append(entry)
    return yaml.safe_dump({"adapters": entries}, sort_keys=False)


def build_adapters_configmap(
    owner: Owner, ready: Mapping[str, str], optional: frozenset[str] = frozenset()
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(
            adapters_configmap_name(owner.name), adapterdeployment_labels(owner.name)
        ),
        "data": {ADAPTERS_FILE_NAME: adapters_file(ready, optional)},
    }


def _probe(path: str, port: str, *, period: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


#: Seconds a terminating server pod keeps serving before it gets SIGTERM (kubelet's sleep
#: action: no binary needed in the image, whichever runtime it is).
PRESTOP_SLEEP_SECONDS = 5


def server_container(
    spec: AdapterDeploymentSpec, run: RuntimePlan, claims: Sequence[str]
) -> Manifest:
    ports = [{"name": "http", "containerPort": run.port, "protocol": "TCP"}]
    if run.grpc_port is not None:
        ports.append({"name": "grpc", "containerPort": run.grpc_port, "protocol": "TCP"})
    env = [
        {"name": "LORALAND_CACHE", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        *({"name": k, "value": v} for k, v in sorted(run.env.items())),
    ]
    _, pvc_mounts = pvc_volumes(claims)
    mounts = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
        *pvc_mounts,
    ]
    if run.agent is None:
        mounts.append({"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True})
    else:
        mounts.append({"name": "stage", "mountPath": STAGE_DIR, "readOnly": True})
    container: Manifest = {
        "name": SERVER_CONTAINER,
        "image": run.image,
        "args": list(run.args),
        "ports": ports,
        "env": env,
        "volumeMounts": mounts,
        # Loading a large base model takes minutes: the startup probe holds the others
        # off for up to 30 min; afterwards a hung server is restarted within ~1 min.
        "startupProbe": _probe(run.health_path, "http", period=10, failures=180),
        "readinessProbe": _probe(run.health_path, "http", period=5, failures=3),
        "livenessProbe": _probe(run.health_path, "http", period=10, failures=6),
        # A terminating pod leaves the Service's endpoints, and then kube-proxy's rules, a
        # moment after it gets SIGTERM; a server that stopped listening at once would
        # refuse the connections still routed to it (a rollout's old pod did).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
    }
    if run.command is not None:
        container["command"] = list(run.command)
    env_from = secret_env_from([spec.base_model.secret_ref])
    if env_from:
        container["envFrom"] = env_from
    requirements = resource_requirements(spec.resources)
    if requirements:
        container["resources"] = requirements
    return container


def agent_container(
    spec: AdapterDeploymentSpec, run: RuntimePlan, claims: Sequence[str], image: str
) -> Manifest:
    """The adapter agent: stages adapters, loads them into the server, gates readiness."""
    assert run.agent is not None
    _, pvc_mounts = pvc_volumes(claims)
    container: Manifest = {
        "name": AGENT_CONTAINER,
        "image": image,
        "command": ["loraland"],
        "args": list(run.agent.args),
        "ports": [{"name": "agent", "containerPort": run.agent.port, "protocol": "TCP"}],
        # Downloads land in the shared volume, so the server reads what the agent fetched.
        "env": [
            {"name": "LORALAND_CACHE", "value": STAGE_DIR},
            {"name": "HF_HOME", "value": f"{STAGE_DIR}/huggingface"},
        ],
        "volumeMounts": [
            {"name": "stage", "mountPath": STAGE_DIR},
            {"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True},
            *pvc_mounts,
        ],
        # Ready only once every required adapter is loaded into this pod's server: the
        # pod joins the Service then, never before (a pod is Ready when all containers are).
        "readinessProbe": _probe("/ready", "agent", period=2, failures=1),
        "livenessProbe": _probe("/health", "agent", period=10, failures=6),
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "1Gi"},
        },
    }
    env_from = secret_env_from([spec.base_model.secret_ref])
    if env_from:
        container["envFrom"] = env_from  # hub tokens and S3 credentials for staging
    return container


def served_claims(spec: AdapterDeploymentSpec, ready: Mapping[str, str]) -> list[str]:
    return claims_of([spec.base_model.uri, *ready.values()])


def build_deployment(
    owner: Owner,
    spec: AdapterDeploymentSpec,
    run: RuntimePlan,
    claims: Sequence[str],
    config: OperatorConfig,
) -> Manifest:
    labels = adapterdeployment_labels(owner.name)
    pvc_vols, _ = pvc_volumes(claims)
    volumes: list[Manifest] = [
        {"name": "cache", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        *pvc_vols,
    ]
    volumes.append({"name": "adapters", "configMap": {"name": adapters_configmap_name(owner.name)}})
    container = server_container(spec, run, claims)
    container["imagePullPolicy"] = config.image_pull_policy
    containers = [container]
    if run.agent is not None:
        volumes.append({"name": "stage", "emptyDir": {}})
        agent = agent_container(spec, run, claims, config.relay_image)
        agent["imagePullPolicy"] = config.image_pull_policy
        containers.append(agent)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(server_name(owner.name), labels),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": server_selector(owner.name)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "securityContext": volume_group_security(),
                    "containers": containers,
                    "volumes": volumes,
                    **placement(spec.resources),
                },
            },
        },
    }


def build_service(owner: Owner, spec: AdapterDeploymentSpec, run: RuntimePlan) -> Manifest:
    ports = [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}]
    if run.grpc_port is not None:
        ports.append(
            {"name": "grpc", "port": run.grpc_port, "targetPort": "grpc", "protocol": "TCP"}
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(server_name(owner.name), adapterdeployment_labels(owner.name)),
        "spec": {
            "type": spec.service.type,
            "selector": server_selector(owner.name),
            "ports": ports,
        },
    }


def endpoint(owner: Owner, spec: AdapterDeploymentSpec) -> str:
    """The in-cluster URL clients (and the load tests) use."""
    port = "" if spec.service.port == 80 else f":{spec.service.port}"
    return f"http://{server_name(owner.name)}.{owner.namespace}.svc{port}"


def selector_string(owner: Owner) -> str:
    """``status.selector`` for the scale subresource (HPA reads it)."""
    return ",".join(f"{k}={v}" for k, v in sorted(server_selector(owner.name).items()))
