"""FineTuneJob -> its children (pure builders; tests compare the dicts).

One FineTuneJob owns:

* a ConfigMap holding the job as a FineTuneJob manifest, mounted into the pod and given
  to ``loraland finetune -f`` (the trainer reads the same file format locally);
* a ServiceAccount, a Role allowing only ``get``/``patch`` on *this* job's
  ``finetunejobs/status`` (``resourceNames``), and their RoleBinding;
* a ``batch/v1`` Job whose pod runs the trainer and, as a native sidecar (an init
  container with ``restartPolicy: Always``), ``loraland operator relay-progress``. They
  share an emptyDir: the trainer appends progress lines and writes its result file there,
  the relay tails them and patches the FineTuneJob's status. Only the relay container gets
  the ServiceAccount token (a projected volume; the pod does not automount one), so the
  trainer process, which runs user-chosen code paths, holds no credentials at all.

Every child carries an ownerReference to the FineTuneJob (deleting the job deletes
them), the ``app.kubernetes.io/*`` labels, and a name derived from the job's name only.
"""

from __future__ import annotations

import yaml

from loraland.api.finetunejob import API_VERSION, KIND, FineTuneJobSpec
from loraland.controller.config import OperatorConfig
from loraland.controller.names import (
    finetunejob_labels,
    job_name,
    relay_account_name,
    spec_configmap_name,
)
from loraland.controller.podspec import (
    Manifest,
    Owner,
    claims_of,
    loraland_pod_security,
    placement,
    pvc_volumes,
    resource_requirements,
    secret_env_from,
)
from loraland.settings import PVC_MOUNT_ROOT
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri

RUN_DIR = "/var/run/loraland"
PROGRESS_FILE = f"{RUN_DIR}/progress.jsonl"
RESULT_FILE = f"{RUN_DIR}/result.json"
SPEC_DIR = "/etc/loraland/job"
SPEC_FILE_NAME = "finetunejob.yaml"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TRAINER_CONTAINER = "trainer"
RELAY_CONTAINER = "progress-relay"
#: The trainer exits 2 for a user error (bad spec, unreadable dataset): retrying the pod
#: cannot help, so the Job fails at once (podFailurePolicy) with the trainer's message.
USER_ERROR_EXIT_CODE = 2


def spec_document(owner: Owner, spec: FineTuneJobSpec) -> str:
    """The FineTuneJob manifest the trainer reads (``loraland finetune -f``)."""
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": owner.name, "namespace": owner.namespace},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    return yaml.safe_dump(doc, sort_keys=False)


def build_spec_configmap(owner: Owner, spec: FineTuneJobSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(spec_configmap_name(owner.name), finetunejob_labels(owner.name)),
        "data": {SPEC_FILE_NAME: spec_document(owner, spec)},
    }


def build_service_account(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": owner.metadata(relay_account_name(owner.name), finetunejob_labels(owner.name)),
        "automountServiceAccountToken": False,
    }


def build_role(owner: Owner) -> Manifest:
    """Patch this one FineTuneJob's status, nothing else (resourceNames pins the object)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": owner.metadata(relay_account_name(owner.name), finetunejob_labels(owner.name)),
        "rules": [
            {
                "apiGroups": ["loraland.dev"],
                "resources": ["finetunejobs/status"],
                "resourceNames": [owner.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(owner: Owner) -> Manifest:
    name = relay_account_name(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": owner.metadata(name, finetunejob_labels(owner.name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def output_claim(spec: FineTuneJobSpec) -> str | None:
    try:
        parsed = parse_uri(spec.output.uri)
    except StorageError:
        return None
    return parsed.location if parsed.scheme is Scheme.PVC else None


def work_dir(owner: Owner, spec: FineTuneJobSpec) -> str:
    """Checkpoints outlive the pod only on a volume: the output claim when there is one.

    Keyed by the FineTuneJob's uid, so the Job's retried pods resume while a deleted and
    recreated job of the same name starts afresh.
    """
    claim = output_claim(spec)
    if claim is None:
        return f"{RUN_DIR}/work"
    return f"{PVC_MOUNT_ROOT}/{claim}/.loraland/work/{owner.uid}"


def trainer_image(spec: FineTuneJobSpec, config: OperatorConfig) -> str:
    if spec.image:
        return spec.image
    return config.trainer_image if spec.resources.gpus else config.trainer_cpu_image


def _token_volume() -> Manifest:
    """What automounting would give, but mounted only into the relay container."""
    return {
        "name": "relay-token",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def adapter_name(owner: Owner, spec: FineTuneJobSpec) -> str:
    """The adapter's name: spec.output.adapterName, else the job's name (as the trainer)."""
    return spec.output.adapter_name or owner.name


def relay_container(owner: Owner, spec: FineTuneJobSpec, config: OperatorConfig) -> Manifest:
    return {
        "name": RELAY_CONTAINER,
        "image": config.relay_image,
        "imagePullPolicy": config.image_pull_policy,
        # A native sidecar: starts before the trainer, stops after it, and does not keep
        # the Job from completing.
        "restartPolicy": "Always",
        "command": ["loraland"],
        "args": [
            "operator",
            "relay-progress",
            "--ftj",
            owner.name,
            "--namespace",
            owner.namespace,
            "--file",
            PROGRESS_FILE,
            "--result",
            RESULT_FILE,
            "--adapter-name",
            adapter_name(owner, spec),
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [
            {"name": "run", "mountPath": RUN_DIR, "readOnly": True},
            {"name": "relay-token", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    }


def trainer_container(owner: Owner, spec: FineTuneJobSpec, config: OperatorConfig) -> Manifest:
    claims = claims_of([spec.base_model.uri, spec.dataset.uri, spec.output.uri])
    out_claim = output_claim(spec)
    _, pvc_mounts = pvc_volumes(claims, writable=[out_claim] if out_claim else [])
    container: Manifest = {
        "name": TRAINER_CONTAINER,
        "image": trainer_image(spec, config),
        "imagePullPolicy": config.image_pull_policy,
        "command": ["loraland"],
        "args": [
            "finetune",
            "-f",
            f"{SPEC_DIR}/{SPEC_FILE_NAME}",
            "--progress-file",
            PROGRESS_FILE,
            "--result-file",
            RESULT_FILE,
            "--work-dir",
            work_dir(owner, spec),
        ],
        "env": [
            {"name": "LORALAND_CACHE", "value": f"{RUN_DIR}/cache"},
            {"name": "HF_HOME", "value": f"{RUN_DIR}/cache/huggingface"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        # A crash leaves no result file; its last log lines then explain the failure.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "run", "mountPath": RUN_DIR},
            {"name": "job-spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            *pvc_mounts,
        ],
    }
    env_from = secret_env_from([spec.base_model.secret_ref])
    if env_from:
        container["envFrom"] = env_from
    requirements = resource_requirements(spec.resources)
    if requirements:
        container["resources"] = requirements
    return container


def build_job(owner: Owner, spec: FineTuneJobSpec, config: OperatorConfig) -> Manifest:
    """The batch/v1 Job that trains (and scores) the adapter."""
    labels = finetunejob_labels(owner.name)
    claims = claims_of([spec.base_model.uri, spec.dataset.uri, spec.output.uri])
    out_claim = output_claim(spec)
    pvc_vols, _ = pvc_volumes(claims, writable=[out_claim] if out_claim else [])
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "serviceAccountName": relay_account_name(owner.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": loraland_pod_security(),
        "initContainers": [relay_container(owner, spec, config)],
        "containers": [trainer_container(owner, spec, config)],
        "volumes": [
            {"name": "run", "emptyDir": {}},
            {"name": "job-spec", "configMap": {"name": spec_configmap_name(owner.name)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            _token_volume(),
            *pvc_vols,
        ],
        **placement(spec.resources),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **owner.metadata(job_name(owner.name), labels),
            "annotations": {"loraland.dev/spec-generation": str(owner.generation)},
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": TRAINER_CONTAINER,
                            "operator": "In",
                            "values": [USER_ERROR_EXIT_CODE],
                        },
                    },
                    # Preemption or node drain is not the trainer's fault: retry for free.
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_children(owner: Owner, spec: FineTuneJobSpec, config: OperatorConfig) -> list[Manifest]:
    """In creation order: what the Job's pod needs exists before the Job."""
    return [
        build_spec_configmap(owner, spec),
        build_service_account(owner),
        build_role(owner),
        build_role_binding(owner),
        build_job(owner, spec, config),
    ]


def describe(manifest: Manifest) -> str:
    """``Job/demo-train`` for messages and logs."""
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
