"""Serving the validating admission webhook: options, certificates, Kopf's server.

``loraland operator run --webhook-listen 0.0.0.0:9443`` starts Kopf's webhook server,
and each time it starts serving (at start, and after certificate files change) the
operator writes the webhooks (:func:`loraland.controller.admission.webhooks`, with the CA
bundle) into the ValidatingWebhookConfiguration named by ``--webhook-configuration``,
creating it when absent. Kopf's own "managed" mode would do this but insists on a
MutatingWebhookConfiguration too (and a right to create any), so it is not used. The
webhooks stay when the operator stops: with failurePolicy Fail, nothing is admitted
unchecked while it is away. How the API server reaches the operator:

* ``--webhook-service NAMESPACE/NAME[:PORT]``: through a Service (the operator runs in
  the cluster; the Helm chart's way);
* ``--webhook-url https://HOST:PORT``: at a URL (the operator runs outside the cluster,
  e.g. on a developer's machine or in the integration tests);
* neither: at the listening address itself.

Certificates come from ``--webhook-cert-dir`` (tls.crt, tls.key and optionally ca.crt, as
a kubernetes.io/tls Secret mounts them: the chart's generated Secret or cert-manager's),
else a fresh self-signed CA and certificate for the URL's or the Service's host names.
Kopf reloads the files when they change (cert-manager renewals), and the new CA is
written into the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loraland.controller.admission import Kind, webhooks
from loraland.controller.certs import CertFiles, write_self_signed
from loraland.controller.errors import OperatorError
from loraland.controller.kube import Kube

log = logging.getLogger("loraland.operator")
VWC = ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
Publish = Callable[[dict[str, Any]], Awaitable[None]]

FailurePolicy = Literal["Fail", "Ignore"]


class WebhookOptions(BaseModel):
    """The webhook flags of ``loraland operator run``, parsed once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = "0.0.0.0"
    listen_port: int = Field(default=9443, ge=1, le=65535)
    url: str | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int = Field(default=443, ge=1, le=65535)
    cert_dir: Path | None = None
    #: Kubernetes wants webhook names with at least three dot-separated parts; Kopf names
    #: each webhook "<handler id>.<configuration>", so the name needs a dot.
    configuration: str = Field(
        default="loraland-operator.loraland.dev", pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)+$"
    )
    failure_policy: FailurePolicy = "Fail"

    @model_validator(mode="after")
    def _one_target(self) -> WebhookOptions:
        if self.url is not None and self.service_name is not None:
            raise ValueError("give --webhook-url or --webhook-service, not both")
        if self.url is not None and urllib.parse.urlsplit(self.url).scheme != "https":
            raise ValueError(f"--webhook-url {self.url}: the API server calls webhooks over https")
        return self

    @classmethod
    def from_flags(
        cls,
        listen: str,
        *,
        url: str | None = None,
        service: str | None = None,
        cert_dir: Path | None = None,
        configuration: str | None = None,
        failure_policy: str | None = None,
    ) -> WebhookOptions:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise OperatorError(f"--webhook-listen {listen!r}: write HOST:PORT, e.g. 0.0.0.0:9443")
        values: dict[str, Any] = {"listen_host": host or "0.0.0.0", "listen_port": int(port)}
        if service:
            ns, slash, rest = service.partition("/")
            name, colon, svc_port = rest.partition(":")
            if not slash or not ns or not name or (colon and not svc_port.isdigit()):
                raise OperatorError(f"--webhook-service {service!r}: write NAMESPACE/NAME[:PORT]")
            values.update(service_namespace=ns, service_name=name)
            if colon:
                values["service_port"] = int(svc_port)
        values.update(
            {
                k: v
                for k, v in {
                    "url": url,
                    "cert_dir": cert_dir,
                    "configuration": configuration,
                    "failure_policy": failure_policy,
                }.items()
                if v
            }
        )
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None

    def hosts(self) -> list[str]:
        """The names the API server uses to reach us (the certificate's SANs)."""
        if self.service_name is not None:
            svc, ns = self.service_name, self.service_namespace
            return [f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}", svc]
        if self.url is not None:
            return [urllib.parse.urlsplit(self.url).hostname or "localhost"]
        host = self.listen_host
        return ["127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host]

    def client_config(self) -> dict[str, Any]:
        """How the API server reaches the webhook (without the CA bundle)."""
        if self.service_name is not None:
            return {
                "service": {
                    "namespace": self.service_namespace,
                    "name": self.service_name,
                    "port": self.service_port,
                    "path": "",
                }
            }
        if self.url is not None:
            return {"url": self.url.rstrip("/")}
        return {"url": f"https://{self.hosts()[0]}:{self.listen_port}"}


def publish_configuration(
    kube: Kube, options: WebhookOptions, served: Iterable[Kind], client: dict[str, Any]
) -> None:
    """Write the webhooks into the configuration (patch; create it when it is absent)."""
    hooks = webhooks(
        served,
        client,
        configuration=options.configuration,
        failure_policy=options.failure_policy,
    )
    name = options.configuration
    try:
        kube.merge_patch(*VWC, None, name, {"webhooks": hooks})
    except ApiException as exc:
        if exc.status != 404:
            raise
        body = {
            "apiVersion": VWC[0],
            "kind": VWC[1],
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "loraland"}},
            "webhooks": hooks,
        }
        kube.request(
            "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", body
        )
    log.info(
        "webhook configuration %s: %d webhooks -> %s",
        name,
        len(hooks),
        client.get("url") or client.get("service"),
    )


class _Server(kopf.WebhookServer):
    """Kopf's server, announcing ``client`` (a Service or a URL) instead of its own URL,
    and publishing the configuration before Kopf learns of it."""

    def __init__(self, client: dict[str, Any], publish: Publish, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.publish = publish

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for served in super().__call__(fn):
            config = dict(self.client)
            if served.get("caBundle"):
                config["caBundle"] = served["caBundle"]
            await self.publish(config)
            yield config


def publisher(kube: Kube, options: WebhookOptions, served: Iterable[Kind]) -> Publish:
    """:func:`publish_configuration` off the event loop, retried a few times."""
    kinds = list(served)

    async def publish(client: dict[str, Any]) -> None:
        for attempt in range(6):
            try:
                await asyncio.to_thread(publish_configuration, kube, options, kinds, client)
                return
            except ApiException as exc:
                if exc.status in (401, 403) or attempt == 5:
                    raise OperatorError(
                        f"cannot write ValidatingWebhookConfiguration {options.configuration}: "
                        f"{exc.status} {exc.reason}"
                    ) from None
                await asyncio.sleep(2**attempt)

    return publish


async def _no_publish(client: dict[str, Any]) -> None:
    return None


def server(
    options: WebhookOptions, scratch: Path, publish: Publish = _no_publish
) -> kopf.WebhookServer:
    """Kopf's webhook server for ``options``; a self-signed certificate goes to ``scratch``."""
    if options.cert_dir is not None:
        files = CertFiles.in_dir(options.cert_dir)
        for path in (files.cert, files.key):
            if not path.is_file():
                raise OperatorError(f"--webhook-cert-dir: {path} is missing")
        ca = files.ca if files.ca.is_file() else files.cert
    else:
        files = write_self_signed(scratch, options.hosts())
        ca = files.ca
    return _Server(
        options.client_config(),
        publish,
        addr=options.listen_host,
        port=options.listen_port,
        certfile=str(files.cert),
        pkeyfile=str(files.key),
        cafile=str(ca),
    )
