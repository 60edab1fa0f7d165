"""Distributed Locust inside a cluster: manifests, built by pure functions.

One master (web UI on 8089, workers connect on 5557) and N workers, all running the same
locustfile from a ConfigMap, pointed at a Service such as an AdapterDeployment's
(``http://<adapterdeployment>.<namespace>.svc``). The image must hold loraland (the
locustfile imports :mod:`loraland.loadtest`): the CPU server image does, and Locust needs
no GPU. The suite's flags travel as ``LORALAND_LOADTEST_*`` environment variables;
Locust also sends the master's values to the workers when a test starts.

Two shapes:

- interactive (default): the master starts the test by itself (``--autostart``) with the
  given users and spawn rate, and keeps its web UI up afterwards, so Deployments (which
  restart what exits) own master and workers; open the UI with
  ``kubectl port-forward svc/<name>-master 8089``.
- headless (``--headless``, needs a run time): master and workers are Jobs. The master runs
  one ``loraland loadtest sweep`` level as Locust's master and, when it ends, prints the
  level's report (TTFT, total request time, token streaming time, tokens/s) as JSON after
  ``sweep.SUMMARY_MARKER`` in its log, so ``kubectl logs job/<name>-master`` brings the
  report back. Locust tells its workers to quit at the end, so their Job completes too.

Placement (``nodeSelector``, ``tolerations``) applies to every pod, for clusters whose
load machines are labelled or tainted.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loraland import __version__
from loraland.loadtest.options import LoadOptions
from loraland.loadtest.sweep import BUNDLED_LOCUSTFILE

Manifest = dict[str, Any]

MASTER_PORT = 5557
WEB_PORT = 8089
LOCUSTFILE_DIR = "/etc/locust"
LOCUSTFILE_KEY = "locustfile.py"
DEFAULT_IMAGE = f"ghcr.io/loraland/server:{__version__}-cpu"

_DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
#: Where the headless master's sweep writes its CSVs and summary (an emptyDir).
REPORT_DIR = "/tmp/loadtest"
#: How long a headless master waits for its workers to connect before giving up.
EXPECT_WORKERS_WAIT_S = 300


class Toleration(BaseModel):
    """A pod toleration, as Kubernetes spells it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """``KEY[=VALUE][:EFFECT]`` (kubectl taint's spelling); no value means Exists."""
        head, _, effect = text.partition(":")
        key, has_value, value = head.partition("=")
        return cls.model_validate(
            {
                "key": key,
                "operator": "Equal" if has_value else "Exists",
                "value": value if has_value else None,
                "effect": effect or None,
            }
        )

    def manifest(self) -> dict[str, str]:
        return self.model_dump(exclude_none=True)


class LocustCluster(BaseModel):
    """What the manifests depend on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="loadtest", pattern=_DNS_LABEL)
    namespace: str | None = None
    host: str = Field(min_length=1)
    users: int = Field(default=16, ge=1)
    spawn_rate: float | None = Field(default=None, gt=0)
    workers: int = Field(default=2, ge=1)
    run_time: str | None = None
    image: str = DEFAULT_IMAGE
    options: LoadOptions = Field(default_factory=LoadOptions)
    worker_cpu: str = "1"
    worker_memory: str = "1Gi"
    headless: bool = False
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @model_validator(mode="after")
    def _headless_runs_for_a_while(self) -> LocustCluster:
        if self.headless and not self.run_time:
            raise ValueError("run_time: a headless run needs one (e.g. 60s), or it never ends")
        return self


def _labels(spec: LocustCluster, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "locust",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "loraland",
    }


def _metadata(spec: LocustCluster, name: str, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(spec, component)}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    return meta


def master_name(spec: LocustCluster) -> str:
    return f"{spec.name}-master"


def worker_name(spec: LocustCluster) -> str:
    return f"{spec.name}-worker"


def configmap_name(spec: LocustCluster) -> str:
    return f"{spec.name}-locustfile"


def build_configmap(spec: LocustCluster, locustfile: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(spec, configmap_name(spec), "locustfile"),
        "data": {LOCUSTFILE_KEY: locustfile},
    }


def build_master_service(spec: LocustCluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, master_name(spec), "master"),
        "spec": {
            "selector": _labels(spec, "master"),
            "ports": [
                {"name": "master", "port": MASTER_PORT, "targetPort": MASTER_PORT},
                {"name": "web", "port": WEB_PORT, "targetPort": WEB_PORT},
            ],
        },
    }


def _container(
    spec: LocustCluster, args: list[str], ports: list[int], command: str = "locust"
) -> dict[str, Any]:
    env = {"LOCUST_LOCUSTFILE": f"{LOCUSTFILE_DIR}/{LOCUSTFILE_KEY}", **spec.options.to_env()}
    container: dict[str, Any] = {
        "name": "locust",
        "image": spec.image,
        "command": [command],
        "args": args,
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
        "volumeMounts": [{"name": "locustfile", "mountPath": LOCUSTFILE_DIR, "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if ports:
        container["ports"] = [{"containerPort": port} for port in ports]
    return container


def _pod_template(
    spec: LocustCluster,
    component: str,
    container: dict[str, Any],
    extra_volumes: tuple[dict[str, Any], ...] = (),
    **pod: Any,
) -> dict[str, Any]:
    volumes = [{"name": "locustfile", "configMap": {"name": configmap_name(spec)}}]
    volumes += extra_volumes
    pod_spec: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **pod,
        "containers": [container],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [t.manifest() for t in spec.tolerations]
    return {"metadata": {"labels": _labels(spec, component)}, "spec": pod_spec}


def _deployment(
    spec: LocustCluster, name: str, component: str, replicas: int, container: dict[str, Any]
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(spec, component)},
            "template": _pod_template(spec, component, container),
        },
    }


def _job(
    spec: LocustCluster,
    name: str,
    component: str,
    container: dict[str, Any],
    *,
    pods: int,
    restart_policy: str,
    backoff_limit: int,
    extra_volumes: tuple[dict[str, Any], ...] = (),
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, name, component),
        "spec": {
            "parallelism": pods,
            "completions": pods,
            "backoffLimit": backoff_limit,
            "template": _pod_template(
                spec, component, container, extra_volumes, restartPolicy=restart_policy
            ),
        },
    }


def _spawn_rate(spec: LocustCluster) -> float:
    return spec.spawn_rate if spec.spawn_rate is not None else spec.users


def build_headless_master(spec: LocustCluster) -> Manifest:
    """A Job: one sweep level run as Locust's master, its report printed to the log."""
    args = [
        "loadtest",
        "sweep",
        "--host",
        spec.host,
        "--users",
        str(spec.users),
        "--spawn-rate",
        f"{_spawn_rate(spec):g}",
        "--duration",
        str(spec.run_time),
        "--out",
        REPORT_DIR,
        "--locustfile",
        f"{LOCUSTFILE_DIR}/{LOCUSTFILE_KEY}",
        "--locust-arg=--master",
        f"--locust-arg=--expect-workers={spec.workers}",
        f"--locust-arg=--expect-workers-max-wait={EXPECT_WORKERS_WAIT_S}",
        "--print-summary",
        *spec.options.to_args(),
    ]
    container = _container(spec, args, [MASTER_PORT], command="loraland")
    container["volumeMounts"].append({"name": "report", "mountPath": REPORT_DIR})
    container["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    # The master is the run: a retry would start a second, different measurement.
    return _job(
        spec,
        master_name(spec),
        "master",
        container,
        pods=1,
        restart_policy="Never",
        backoff_limit=0,
        extra_volumes=({"name": "report", "emptyDir": {}},),
    )


def build_master(spec: LocustCluster) -> Manifest:
    if spec.headless:
        return build_headless_master(spec)
    args = [
        "--master",
        "--host",
        spec.host,
        "--autostart",
        "--users",
        str(spec.users),
        "--spawn-rate",
        f"{_spawn_rate(spec):g}",
    ]
    if spec.run_time:
        args += ["--run-time", spec.run_time]
    container = _container(spec, args, [MASTER_PORT, WEB_PORT])
    container["readinessProbe"] = {
        "tcpSocket": {"port": WEB_PORT},
        "periodSeconds": 5,
    }
    container["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    return _deployment(spec, master_name(spec), "master", 1, container)


def build_workers(spec: LocustCluster) -> Manifest:
    args = ["--worker", "--master-host", master_name(spec), "--master-port", str(MASTER_PORT)]
    container = _container(spec, args, [])
    resources = {"cpu": spec.worker_cpu, "memory": spec.worker_memory}
    container["resources"] = {"requests": resources, "limits": {"memory": spec.worker_memory}}
    if spec.headless:
        # A worker that came up before its master retries; one told to quit exits 0.
        return _job(
            spec,
            worker_name(spec),
            "worker",
            container,
            pods=spec.workers,
            restart_policy="OnFailure",
            backoff_limit=6,
        )
    return _deployment(spec, worker_name(spec), "worker", spec.workers, container)


def build_manifests(spec: LocustCluster, locustfile: str | None = None) -> list[Manifest]:
    """ConfigMap, master Service, master, workers (apply order)."""
    text = locustfile if locustfile is not None else BUNDLED_LOCUSTFILE.read_text()
    return [
        build_configmap(spec, text),
        build_master_service(spec),
        build_master(spec),
        build_workers(spec),
    ]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the locustfile) as literal blocks, readable in the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, width=100)
