"""Admission decisions, webhook options and certificates (pure parts of the webhook)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from loraland.controller.admission import check, kinds, refusal
from loraland.controller.certs import self_signed, write_self_signed
from loraland.controller.config import OperatorConfig
from loraland.controller.errors import OperatorError
from loraland.controller.webhook import WebhookOptions


def body(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "ns", **meta}, "spec": spec}


GOOD = {"baseModel": {"uri": "hf://org/model"}, "runtime": "vllm", "resources": {"gpus": 1}}
BAD = {**GOOD, "baseModel": {"uri": "builtin://smollm2-135m-instruct"}}


def test_runtime_plan_problems_join_the_rules_with_their_field() -> None:
    kind = kinds(OperatorConfig())["AdapterDeployment"]
    assert check(kind, body(GOOD)).ok
    checked = check(kind, body(BAD))
    assert [p.path for p in checked.problems] == ["spec.baseModel.uri"]
    assert "runtime vllm cannot load builtin://" in checked.message
    # The rules and plan() parse the same URI: one problem, not two.
    twice = check(kind, body({**GOOD, "adapters": [{"name": "a", "uri": "ftp://x"}]}))
    assert checked.ok is False and len(twice.problems) == 1


@pytest.mark.parametrize(
    ("operation", "new", "old", "refused"),
    [
        ("CREATE", body(BAD), None, True),
        ("CREATE", body(GOOD), None, False),
        ("UPDATE", body(BAD), body(GOOD), True),
        # Stored before the webhook existed: metadata changes (finalizers) still pass.
        ("UPDATE", body(BAD, labels={"a": "b"}), body(BAD), False),
        ("UPDATE", body(BAD, deletionTimestamp="2026-01-01T00:00:00Z"), body(GOOD), False),
        ("DELETE", body(BAD), body(BAD), False),
    ],
)
def test_refusal(
    operation: str, new: dict[str, Any], old: dict[str, Any] | None, refused: bool
) -> None:
    kind = kinds(OperatorConfig())["AdapterDeployment"]
    message = refusal(kind, operation, new, old)
    assert (message is not None) is refused
    if message is not None:
        assert message == check(kind, new).message


def test_webhook_options_from_flags() -> None:
    svc = WebhookOptions.from_flags("0.0.0.0:9443", service="sys/hook:8443")
    assert svc.client_config() == {
        "service": {"namespace": "sys", "name": "hook", "port": 8443, "path": ""}
    }
    assert svc.hosts()[0] == "hook.sys.svc"
    url = WebhookOptions.from_flags("127.0.0.1:9443", url="https://10.0.0.5:31443/")
    assert url.client_config() == {"url": "https://10.0.0.5:31443"}
    assert url.hosts() == ["10.0.0.5"]
    local = WebhookOptions.from_flags("0.0.0.0:9555")
    assert local.client_config() == {"url": "https://127.0.0.1:9555"}
    for bad in (
        {"listen": "9443"},
        {"listen": ":1", "service": "nonamespace"},
        {"listen": ":1", "url": "http://x"},
        {"listen": ":1", "url": "https://x", "service": "a/b"},
        {"listen": ":1", "configuration": "nodots"},
        {"listen": ":1", "failure_policy": "Sometimes"},
    ):
        listen = bad.pop("listen")
        with pytest.raises(OperatorError):
            WebhookOptions.from_flags(listen, **bad)


def test_self_signed_certificate_serves_its_hosts(tmp_path: Path) -> None:
    cert_pem, _, ca_pem = self_signed(["hook.sys.svc", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hook.sys.svc"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    files = write_self_signed(tmp_path, ["localhost"])
    assert files.key.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)  # a pair the server can load


async def test_the_server_answers_over_tls_and_announces_its_client_config(
    tmp_path: Path,
) -> None:
    """Kopf's server with our certificate: the CA it announces verifies what it serves."""
    import base64
    import socket

    import aiohttp
    from loraland.controller.webhook import server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = WebhookOptions.from_flags(f"127.0.0.1:{port}", service="sys/hook:443")
    seen: list[Any] = []

    async def fn(request: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append((request, kwargs["webhook"]))
        return {"response": {"allowed": True}}

    served = server(options, tmp_path)
    stream = served(fn)
    config = await stream.__anext__()
    try:
        assert config["service"] == {"namespace": "sys", "name": "hook", "port": 443, "path": ""}
        context = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode())
        context.check_hostname = False  # the certificate names the Service, we dial 127.0.0.1
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{port}/validate-finetunejob", json={"x": 1}, ssl=context
            ) as response,
        ):
            assert response.status == 200
            assert await response.json() == {"response": {"allowed": True}}
        assert seen == [({"x": 1}, "validate-finetunejob")]
    finally:
        await stream.aclose()


def test_webhooks_route_each_kind_to_its_handler() -> None:
    from loraland.controller.admission import webhooks

    served = kinds(OperatorConfig()).values()
    by_url = webhooks(served, {"url": "https://h:1/", "caBundle": "Q0E="}, configuration="c.x.dev")
    assert [(w["name"], w["clientConfig"]) for w in by_url] == [
        (
            "validate-finetunejob.c.x.dev",
            {"url": "https://h:1/validate-finetunejob", "caBundle": "Q0E="},
        ),
        (
            "validate-adapterdeployment.c.x.dev",
            {"url": "https://h:1/validate-adapterdeployment", "caBundle": "Q0E="},
        ),
        (
            "validate-finetunestudy.c.x.dev",
            {"url": "https://h:1/validate-finetunestudy", "caBundle": "Q0E="},
        ),
    ]
    assert {w["failurePolicy"] for w in by_url} == {"Fail"}
    assert by_url[0]["rules"] == [
        {
            "apiGroups": ["loraland.dev"],
            "apiVersions": ["v1alpha1"],
            "resources": ["finetunejobs"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    service = {"service": {"namespace": "n", "name": "s", "port": 443, "path": ""}}
    (hook, *_) = webhooks(served, service, configuration="c.x.dev", failure_policy="Ignore")
    assert hook["clientConfig"]["service"]["path"] == "/validate-finetunejob"
    assert hook["failurePolicy"] == "Ignore"
    assert service["service"]["path"] == ""  # the input is not changed
