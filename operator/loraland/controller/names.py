"""Deterministic names and labels of the objects the operator creates.

A child's name is a function of its owner's name only, so a restarted operator finds the
Job it created before instead of making a second one. Kubernetes limits many names (and
every label value) to 63 characters while a custom resource's name may be 253: a name
that does not fit is cut and given a short hash of the full name, still deterministic.
"""

from __future__ import annotations

import hashlib
import re

from loraland import __version__

PART_OF = "loraland"
MANAGED_BY = "loraland-operator"
FINETUNEJOB_LABEL = "loraland.dev/finetunejob"
ADAPTERDEPLOYMENT_LABEL = "loraland.dev/adapterdeployment"
STUDY_LABEL = "loraland.dev/study"
STUDY_BASE_LABEL = "loraland.dev/study-base"
STUDY_TASK_LABEL = "loraland.dev/study-task"
STUDY_VARIANT_LABEL = "loraland.dev/study-variant"
#: On each FineTuneJob of a study: which attempt of its run it is (1 = the first).
ATTEMPT_ANNOTATION = "loraland.dev/attempt"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _digest(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def fit(name: str, suffix: str = "", limit: int = 63) -> str:
    """``name + suffix`` if it fits in ``limit``, else a cut name + hash + suffix."""
    full = f"{name}{suffix}"
    if len(full) <= limit:
        return full
    keep = limit - len(suffix) - 9
    return f"{name[:keep].rstrip('-.')}-{_digest(name)}{suffix}"


def label_value(value: str) -> str:
    """A label value (<= 63 chars, alphanumeric at both ends) for any object name."""
    return fit(value).strip("-.")


def job_name(ftj: str) -> str:
    return fit(ftj, "-train")


def relay_account_name(ftj: str) -> str:
    """ServiceAccount, Role and RoleBinding of one job's progress relay."""
    return fit(ftj, "-progress")


def spec_configmap_name(ftj: str) -> str:
    return fit(ftj, "-spec")


def results_configmap_name(study: str) -> str:
    """The ConfigMap holding a FineTuneStudy's full table (results.json, results.md)."""
    return fit(study, "-results")


def server_name(adep: str) -> str:
    """Deployment and Service: the resource's own name when it is a valid DNS-1035 label."""
    if len(adep) <= 63 and _DNS_LABEL.match(adep):
        return adep
    return "adep-" + fit(adep, limit=58)


def adapters_configmap_name(adep: str) -> str:
    return fit(adep, "-adapters")


def pvc_volume_name(claim: str) -> str:
    return fit(f"pvc-{claim}".replace(".", "-"))


def common_labels(name: str, instance: str, component: str) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` set every child carries."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": label_value(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
    }


def finetunejob_labels(ftj: str) -> dict[str, str]:
    return {
        **common_labels("loraland-trainer", ftj, "finetune"),
        FINETUNEJOB_LABEL: label_value(ftj),
    }


def server_selector(adep: str) -> dict[str, str]:
    """Labels that select one AdapterDeployment's pods (never changes for a resource)."""
    return {
        "app.kubernetes.io/name": "loraland-server",
        "app.kubernetes.io/instance": label_value(adep),
        ADAPTERDEPLOYMENT_LABEL: label_value(adep),
    }


def adapterdeployment_labels(adep: str) -> dict[str, str]:
    return {**common_labels("loraland-server", adep, "serving"), **server_selector(adep)}
