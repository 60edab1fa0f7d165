"""FineTuneJob -> Job, ConfigMap and relay RBAC: compared as dicts."""

from __future__ import annotations

from typing import Any

import yaml
from loraland.controller.config import OperatorConfig
from loraland.controller.names import job_name
from loraland.controller.podspec import GPU_TOLERATION, Owner
from loraland.controller.trainjob import (
    build_children,
    build_job,
    build_role,
    build_role_binding,
    build_spec_configmap,
)


def test_job_runs_the_trainer_with_gpus_placement_volumes_and_secrets(
    ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig
) -> None:
    job = build_job(ftj_owner, ftj_spec(), config)
    assert job["metadata"]["name"] == "sentiment-train"
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "loraland.dev/v1alpha1",
            "kind": "FineTuneJob",
            "name": "sentiment",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "loraland-trainer"
    assert labels["app.kubernetes.io/instance"] == "sentiment"
    assert labels["app.kubernetes.io/managed-by"] == "loraland-operator"
    assert labels["loraland.dev/finetunejob"] == "sentiment"
    assert job["spec"]["backoffLimit"] == 4
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "sentiment-progress"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        GPU_TOLERATION,
    ]
    (trainer,) = pod["containers"]
    assert trainer["image"] == "reg/trainer:1"
    assert trainer["command"] == ["loraland"]
    assert trainer["args"] == [
        "finetune",
        "-f",
        "/etc/loraland/job/finetunejob.yaml",
        "--progress-file",
        "/var/run/loraland/progress.jsonl",
        "--result-file",
        "/var/run/loraland/result.json",
        "--work-dir",
        "/mnt/pvc/adapters/.loraland/work/uid-1",
    ]
    assert trainer["resources"] == {
        "requests": {"nvidia.com/gpu": "2", "cpu": "8", "memory": "32Gi"},
        "limits": {"nvidia.com/gpu": "2", "memory": "32Gi"},
    }
    assert trainer["envFrom"] == [{"secretRef": {"name": "hub-creds"}}]
    mounts = {m["mountPath"]: m for m in trainer["volumeMounts"]}
    assert mounts["/mnt/pvc/models"]["readOnly"] is True
    assert mounts["/mnt/pvc/data"]["readOnly"] is True
    assert mounts["/mnt/pvc/adapters"]["readOnly"] is False  # the output goes there
    assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts  # no token here
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"models", "data", "adapters"}


def test_relay_is_a_native_sidecar_with_the_only_token(
    ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig
) -> None:
    pod = build_job(ftj_owner, ftj_spec(), config)["spec"]["template"]["spec"]
    (relay,) = pod["initContainers"]
    assert relay["restartPolicy"] == "Always"
    assert relay["image"] == "reg/operator:1"
    assert relay["args"] == [
        "operator",
        "relay-progress",
        "--ftj",
        "sentiment",
        "--namespace",
        "team-a",
        "--file",
        "/var/run/loraland/progress.jsonl",
        "--result",
        "/var/run/loraland/result.json",
        "--adapter-name",
        "sentiment-v1",
    ]
    mounts = {m["mountPath"]: m["name"] for m in relay["volumeMounts"]}
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"] == "relay-token"
    token = next(v for v in pod["volumes"] if v["name"] == "relay-token")
    sources = token["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"


def test_role_allows_patching_only_this_jobs_status(ftj_owner: Owner) -> None:
    assert build_role(ftj_owner)["rules"] == [
        {
            "apiGroups": ["loraland.dev"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["sentiment"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = build_role_binding(ftj_owner)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sentiment-progress", "namespace": "team-a"}
    ]
    assert binding["roleRef"]["name"] == "sentiment-progress"


def test_spec_configmap_is_a_manifest_the_trainer_reads(ftj_spec: Any, ftj_owner: Owner) -> None:
    from loraland.api.finetunejob import parse_job_document

    cm = build_spec_configmap(ftj_owner, ftj_spec())
    doc = yaml.safe_load(cm["data"]["finetunejob.yaml"])
    name, spec = parse_job_document(doc)
    assert name == "sentiment"
    assert spec == ftj_spec()


def test_cpu_job_uses_cpu_image_no_gpu_and_no_gpu_toleration(
    ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig
) -> None:
    spec = ftj_spec(
        resources={"gpus": 0},
        output={"uri": "s3://bucket/adapters/x"},
        baseModel={"uri": "builtin://smollm2-135m-instruct"},
        dataset={"task": "sentiment"},
    )
    pod = build_job(ftj_owner, spec, config)["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    assert trainer["image"] == "reg/trainer:1-cpu"
    assert "resources" not in trainer
    assert "tolerations" not in pod
    assert trainer["args"][-1] == "/var/run/loraland/work"  # no volume: pod-local
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])


def test_spec_image_wins(ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig) -> None:
    job = build_job(ftj_owner, ftj_spec(image="mine/trainer:dev"), config)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mine/trainer:dev"


def test_children_are_deterministic_and_owned(
    ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig
) -> None:
    first = build_children(ftj_owner, ftj_spec(), config)
    assert first == build_children(ftj_owner, ftj_spec(), config)
    assert [c["kind"] for c in first] == [
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Job",
    ]
    assert all(c["metadata"]["ownerReferences"][0]["uid"] == "uid-1" for c in first)


def test_long_names_fit_and_stay_deterministic() -> None:
    long = "a" * 200
    name = job_name(long)
    assert len(name) <= 63 and name.endswith("-train")
    assert name == job_name(long)
    assert job_name("a" * 199 + "b") != name


def test_trainer_pod_owns_its_volumes_through_fs_group(
    ftj_spec: Any, ftj_owner: Owner, config: OperatorConfig
) -> None:
    # A provisioned volume starts root-owned 0755; only fsGroup makes it writable to the
    # image's UID 10001 (tests/realnode proves it on a real kubelet).
    pod = build_job(ftj_owner, ftj_spec(), config)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsUser"] == 10001
    assert security["runAsNonRoot"] is True
    assert security["fsGroup"] == 10001
