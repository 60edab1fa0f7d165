"""Every right the operator needs, in one place (the Helm chart's ClusterRole).

The integration tests run the operator with a ServiceAccount bound to exactly
:func:`operator_rules`, so a call missing here fails a test instead of a user's cluster.
"""

from __future__ import annotations

from typing import Any

#: resource -> verbs. Children: created, adopted, applied, deleted when stale; read to
#: compute status. Custom resources: watched by Kopf, status patched, finalizers for
#: blockOwnerDeletion on children. Events: one per phase transition. Kopf peering: the
#: operator's replicas elect one active peer; the peering object is created at start.
#: Admission: with the webhook on, the operator keeps its ValidatingWebhookConfiguration current
#: (patch) and creates it when absent (create; the chart pre-creates it, so Helm owns it).
_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    # FineTuneJobs and AdapterDeployments are also children (of a FineTuneStudy).
    ("loraland.dev", "finetunejobs", ("get", "list", "watch", "create", "patch", "delete")),
    ("loraland.dev", "finetunejobs/status", ("get", "patch", "update")),
    ("loraland.dev", "finetunejobs/finalizers", ("update",)),
    (
        "loraland.dev",
        "adapterdeployments",
        ("get", "list", "watch", "create", "patch", "delete"),
    ),
    ("loraland.dev", "adapterdeployments/status", ("get", "patch", "update")),
    ("loraland.dev", "adapterdeployments/finalizers", ("update",)),
    ("loraland.dev", "finetunestudies", ("get", "list", "watch", "patch")),
    ("loraland.dev", "finetunestudies/status", ("get", "patch", "update")),
    ("loraland.dev", "finetunestudies/finalizers", ("update",)),
    ("batch", "jobs", ("get", "list", "watch", "create", "patch", "delete")),
    ("apps", "deployments", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "services", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "configmaps", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "serviceaccounts", ("get", "list", "watch", "create", "patch", "delete")),
    ("rbac.authorization.k8s.io", "roles", ("get", "list", "watch", "create", "patch", "delete")),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        ("get", "list", "watch", "create", "patch", "delete"),
    ),
    ("", "pods", ("get", "list", "watch")),
    ("", "events", ("create", "patch")),
    ("events.k8s.io", "events", ("create", "patch")),
    ("", "namespaces", ("get", "list", "watch")),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("kopf.dev", "clusterkopfpeerings", ("get", "list", "watch", "patch", "create")),
    ("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch", "create")),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", ("create", "patch")),
]

#: To create the relay's Role (verbs on finetunejobs/status), the operator must hold
#: those verbs itself: Kubernetes refuses to let anyone grant rights it does not have
#: (or it needs ``escalate``, which we do not ask for).
RELAY_RULE_VERBS = ("get", "patch")


def operator_rules() -> list[dict[str, Any]]:
    """PolicyRules for the operator's ClusterRole."""
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        for group, resource, verbs in _RULES
    ]


def cluster_role(name: str = "loraland-operator") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "loraland"}},
        "rules": operator_rules(),
    }
