"""Pod-spec pieces shared by training Jobs and serving Deployments (pure).

* :class:`Owner`: the custom resource a child belongs to, and its ownerReference, so
  the garbage collector deletes children with their owner.
* :func:`claims_of`: the PersistentVolumeClaims named by ``pvc://`` URIs; each is mounted
  at ``PVC_MOUNT_ROOT/<claim>`` where :func:`loraland.storage.resolve` looks for it.
* :func:`resource_requirements` / :func:`tolerations`: GPUs as ``nvidia.com/gpu`` with the
  toleration GPU node pools' taint needs (what NVIDIA's ExtendedResourceToleration
  admission plugin would add, done here so no plugin is needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loraland.api.finetunejob import ResourcesSpec
from loraland.controller.names import pvc_volume_name
from loraland.settings import PVC_MOUNT_ROOT
from loraland.storage.errors import StorageError
from loraland.storage.uri import Scheme, parse_uri

# The user and group the project's images run as (images/Dockerfile: USER 10001:10001).
IMAGE_UID = 10001
IMAGE_GID = 10001

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The identity of a custom resource, as far as its children need it."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 1

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
        )

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": dict(labels),
            "ownerReferences": [self.reference()],
        }


def claims_of(uris: Iterable[str | None]) -> list[str]:
    """Sorted distinct claim names of the ``pvc://`` URIs among ``uris``."""
    claims = set()
    for uri in uris:
        if not uri:
            continue
        try:
            parsed = parse_uri(uri)
        except StorageError:
            continue  # reported by the spec check; a bad URI mounts nothing
        if parsed.scheme is Scheme.PVC:
            claims.add(parsed.location)
    return sorted(claims)


def pvc_volumes(
    claims: Sequence[str], writable: Iterable[str] = ()
) -> tuple[list[Manifest], list[Manifest]]:
    """Volumes and mounts for ``claims``; read-only unless the claim is in ``writable``."""
    rw = set(writable)
    volumes = [
        {
            "name": pvc_volume_name(c),
            "persistentVolumeClaim": {"claimName": c, "readOnly": c not in rw},
        }
        for c in claims
    ]
    mounts = [
        {"name": pvc_volume_name(c), "mountPath": f"{PVC_MOUNT_ROOT}/{c}", "readOnly": c not in rw}
        for c in claims
    ]
    return volumes, mounts


def secret_env_from(secret_names: Iterable[str | None]) -> list[Manifest]:
    """Each Secret's keys (HF_TOKEN, AWS_ACCESS_KEY_ID, ...) become environment variables."""
    seen: list[str] = []
    for name in secret_names:
        if name and name not in seen:
            seen.append(name)
    return [{"secretRef": {"name": n}} for n in seen]


def resource_requirements(resources: ResourcesSpec) -> Manifest:
    """GPUs as requests = limits (extended resources cannot overcommit); cpu/memory requests."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(resources.gpus)
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = resources.memory
        limits["memory"] = resources.memory
    out: Manifest = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def tolerations(resources: ResourcesSpec) -> list[Manifest]:
    """The user's tolerations, plus the GPU taint's when the pod asks for GPUs."""
    out = [t.model_dump(by_alias=True, exclude_none=True) for t in resources.tolerations]
    # "Equal" without a key is invalid in a pod; "Exists" is what such an entry means.
    for t in out:
        if "key" not in t and t.get("operator") == "Equal":
            t["operator"] = "Exists"
    if resources.gpus and not any(t.get("key") == GPU_RESOURCE for t in out):
        out.append(dict(GPU_TOLERATION))
    return out


def placement(resources: ResourcesSpec) -> Manifest:
    """nodeSelector and tolerations for a pod spec (absent keys when empty)."""
    out: Manifest = {}
    if resources.node_selector:
        out["nodeSelector"] = dict(resources.node_selector)
    tol = tolerations(resources)
    if tol:
        out["tolerations"] = tol
    return out


def loraland_pod_security() -> Manifest:
    """The pod securityContext of a pod running the project's trainer image.

    ``fsGroup`` is what makes a freshly provisioned PersistentVolume writable: a new disk
    is owned by root with mode 0755, and the kubelet gives the volume to this group (with
    the setgid bit) before the containers start. Without it a ``pvc://`` output is read-only
    to UID 10001. ``OnRootMismatch`` skips the recursive chown once the volume is right,
    so a large model volume is not walked on every pod start.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": IMAGE_GID,
        "fsGroup": IMAGE_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
    }


def volume_group_security() -> Manifest:
    """Only ``fsGroup``, for pods whose image (a third-party serving runtime) chooses its own
    user: their volumes are writable and readable through the group all the same."""
    return {"fsGroup": IMAGE_GID, "fsGroupChangePolicy": "OnRootMismatch"}
