"""Helpers for the operator's integration tests: a restricted operator process, waits.

The operator runs as a subprocess (``loraland operator run``) with a ServiceAccount
token bound to exactly :func:`loraland.controller.rbac.operator_rules`, so a call the
RBAC list forgot fails here. Each test works in its own namespace (the ``namespace``
fixture) against the session's kwok cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from cluster import KubeCluster, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException
from loraland.controller.rbac import cluster_role

REPO = Path(__file__).resolve().parents[3]
LORALAND = str(Path(sys.executable).parent / "loraland")
GROUP, VERSION = "loraland.dev", "v1alpha1"
OPERATOR_NS = "loraland-system"
RESULT_ANNOTATION = "loraland.dev/kwok-result"


def kubeconfig_for_token(cluster: KubeCluster, token: str, path: Path, namespace: str) -> Path:
    """A kubeconfig for the test cluster that authenticates with ``token`` only."""
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    entry = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {"cluster": entry["name"], "user": "sa", "namespace": namespace},
            }
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def service_account_token(cluster: KubeCluster, name: str, namespace: str) -> str:
    """A TokenRequest-API token for the account (what a pod's projected volume holds)."""
    return cluster.kubectl(
        "create", "token", name, "-n", namespace, "--duration", "2h"
    ).stdout.strip()


def install_operator_rbac(cluster: KubeCluster) -> None:
    role = cluster_role("loraland-operator-test")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "loraland-operator-test"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "loraland-operator-test",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "loraland-operator", "namespace": OPERATOR_NS}
        ],
    }
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "loraland-operator", "namespace": OPERATOR_NS},
        },
        role,
        binding,
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    )


class OperatorProcess:
    """``loraland operator run`` in the background, its log in a file."""

    def __init__(
        self, kubeconfig: Path, log_dir: Path, *extra: str, env: dict[str, str] | None = None
    ):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra = list(extra)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{id(self)}-{self.starts}.log"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("KUBECONFIG", None)
        args = [
            LORALAND,
            "operator",
            "run",
            "--all-namespaces",
            "--kubeconfig",
            str(self.kubeconfig),
            "--resync-seconds",
            "5",
            "--adapter-poll-seconds",
            "2",
            *self.extra,
        ]
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Objects:
    """Small typed-enough wrappers over the API the tests read and poke."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.custom = client.CustomObjectsApi(cluster.api_client)
        self.core = client.CoreV1Api(cluster.api_client)
        self.batch = client.BatchV1Api(cluster.api_client)
        self.apps = client.AppsV1Api(cluster.api_client)

    def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.get(plural, ns, name) or {}
        return dict(obj.get("status") or {})

    def apply(self, ns: str, doc: dict[str, Any] | str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        self.cluster.kubectl("apply", "-n", ns, "-f", "-", input=text)

    def jobs(self, ns: str, ftj: str) -> list[Any]:
        return list(
            self.batch.list_namespaced_job(
                ns, label_selector=f"loraland.dev/finetunejob={ftj}"
            ).items
        )

    def pods(self, ns: str, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(ns, label_selector=selector).items)

    def finish_training_pod(self, ns: str, ftj: str, result: str = "Succeeded") -> None:
        """Play the trainer's exit: kwok ends the pod when this annotation says so."""

        def running_pod() -> bool:
            pods = [
                p
                for p in self.pods(ns, f"loraland.dev/finetunejob={ftj}")
                if p.status.phase == "Running"
            ]
            for pod in pods:
                self.core.patch_namespaced_pod(
                    pod.metadata.name,
                    ns,
                    {"metadata": {"annotations": {RESULT_ANNOTATION: result}}},
                )
            return bool(pods)

        wait_for(running_pod, timeout=90, interval=0.5, what=f"a running training pod of {ftj}")

    def finish_study(self, ns: str, study: str, timeout: float = 600) -> dict[str, Any]:
        """End every run of a study as it starts (kwok pods run nothing) until it completes."""

        def done() -> bool:
            runs = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, "finetunejobs", label_selector=f"loraland.dev/study={study}"
            )["items"]
            for run in runs:
                if (run.get("status") or {}).get("phase") != "Running":
                    continue
                for pod in self.pods(ns, f"loraland.dev/finetunejob={run['metadata']['name']}"):
                    if pod.status.phase == "Running":
                        self.core.patch_namespaced_pod(
                            pod.metadata.name,
                            ns,
                            {"metadata": {"annotations": {RESULT_ANNOTATION: "Succeeded"}}},
                        )
            return self.status("finetunestudies", ns, study).get("phase") == "Completed"

        wait_for(done, timeout=timeout, interval=1.0, what=f"finetunestudy/{study} to complete")
        return self.status("finetunestudies", ns, study)

    def wait_phase(
        self, plural: str, ns: str, name: str, phase: str, timeout: float = 90
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.status(plural, ns, name))
            return seen.get("phase") == phase

        try:
            wait_for(reached, timeout=timeout, interval=0.5, what=f"{plural}/{name} {phase}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last status: {json.dumps(seen)[:1500]}") from None
        return self.status(plural, ns, name)

    def events(self, ns: str, name: str) -> list[str]:
        items = self.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}"
        ).items
        return [f"{e.reason}: {e.message}" for e in items]


def until(check: Callable[[], Any], what: str, timeout: float = 90, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; return that."""
    box: list[Any] = []

    def done() -> bool:
        value = check()
        if value:
            box.append(value)
            return True
        return False

    wait_for(done, timeout=timeout, interval=interval, what=what)
    return box[0]


def ftj_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "dataset": {"task": "sentiment"},
        "training": {"maxSteps": 3},
        "output": {"uri": f"s3://loraland-test/{name}"},
        "resources": {"gpus": 1},
    }
    base.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": base,
    }


def adep_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
        "replicas": 1,
        "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
    }
    base.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AdapterDeployment",
        "metadata": {"name": name},
        "spec": base,
    }


def pv_for_claim(name: str, claim: str, namespace: str) -> dict[str, Any]:
    """A PersistentVolume pre-bound to a claim (the test cluster has no provisioner)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def wait_gone(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    wait_for(check, timeout=timeout, interval=0.5, what=what)


def sleep_briefly(seconds: float) -> None:
    time.sleep(seconds)
