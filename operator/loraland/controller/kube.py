"""The operator's only door to the Kubernetes API (besides Kopf's own watches).

A small REST layer over ``kubernetes.client.ApiClient``: manifests are plain dicts (what
the builders return), so there is no model conversion, and every call the operator makes
goes through one of a handful of methods on :class:`Kube`, against a kind listed in
:data:`KINDS`. :mod:`loraland.controller.rbac` derives the operator's RBAC rules from the
same table, and an integration test runs the operator with only those rights.

Children are created with ``create`` (409 -> adopt the existing object, which is what
makes a restart idempotent) and kept in shape with server-side apply (``apply``): the
operator owns the fields it sets, and a second apply of the same manifest is a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

Manifest = dict[str, Any]
FIELD_MANAGER = "loraland-operator"


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced:
            if namespace is None:
                raise ValueError(f"{self.plural} are namespaced")
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name)}"
        if sub is not None:
            base += f"/{sub}"
        return base


#: (apiVersion, kind) -> where it lives. Every kind the operator touches is here.
KINDS: Mapping[tuple[str, str], Kind] = {
    ("v1", "ConfigMap"): Kind("", "v1", "configmaps"),
    ("v1", "ServiceAccount"): Kind("", "v1", "serviceaccounts"),
    ("v1", "Service"): Kind("", "v1", "services"),
    ("v1", "Pod"): Kind("", "v1", "pods"),
    ("batch/v1", "Job"): Kind("batch", "v1", "jobs"),
    ("apps/v1", "Deployment"): Kind("apps", "v1", "deployments"),
    ("rbac.authorization.k8s.io/v1", "Role"): Kind("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Kind(
        "rbac.authorization.k8s.io", "v1", "rolebindings"
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): Kind(
        "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
    ),
    ("loraland.dev/v1alpha1", "FineTuneJob"): Kind("loraland.dev", "v1alpha1", "finetunejobs"),
    ("loraland.dev/v1alpha1", "AdapterDeployment"): Kind(
        "loraland.dev", "v1alpha1", "adapterdeployments"
    ),
    ("loraland.dev/v1alpha1", "FineTuneStudy"): Kind("loraland.dev", "v1alpha1", "finetunestudies"),
}


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None


def is_status(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, ApiException) and exc.status in codes


class Kube:
    """Blocking calls; Kopf runs sync handlers in its thread pool."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        content_type: str = "application/json",
        query: Iterable[tuple[str, str]] = (),
        timeout: float = 30.0,
    ) -> Manifest:
        params = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*params, _request_timeout=timeout)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        data = response.data
        return json.loads(data) if data else {}

    # -- reads

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Manifest | None:
        try:
            return self.request("GET", kind_of(api_version, kind).path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str | None, *, labels: Mapping[str, str]
    ) -> list[Manifest]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        answer = self.request(
            "GET",
            kind_of(api_version, kind).path(namespace),
            query=[("labelSelector", selector)] if selector else [],
        )
        return list(answer.get("items") or [])

    # -- writes

    def create(self, manifest: Manifest) -> tuple[Manifest, bool]:
        """Create, or return the object already there (``created`` False)."""
        meta = manifest["metadata"]
        kind = kind_of(manifest["apiVersion"], manifest["kind"])
        try:
            return self.request("POST", kind.path(meta.get("namespace")), manifest), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = self.get(
            manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"]
        )
        if existing is None:  # deleted between the two calls: the next reconcile retries
            raise ApiException(status=409, reason=f"{meta['name']} vanished while adopting")
        return existing, False

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply: the object ends up with exactly the fields we set."""
        meta = manifest["metadata"]
        kind = kind_of(manifest["apiVersion"], manifest["kind"])
        return self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            manifest,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Manifest,
        *,
        subresource: str | None = None,
    ) -> Manifest:
        return self.request(
            "PATCH",
            kind_of(api_version, kind).path(namespace, name, subresource),
            patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        try:
            self.request(
                "DELETE",
                kind_of(api_version, kind).path(namespace, name),
                {"propagationPolicy": "Background"},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
