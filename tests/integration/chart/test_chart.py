"""The Helm chart: lint, RBAC equal to the operator's needs, dry run, install, reconcile.

Rendering tests need only the helm binary; the rest run against the session's kwok
cluster. The last test is the whole install story: ``helm install`` creates everything,
then ``loraland operator run`` (a local process standing in for the chart's pod, which
kwok does not really run) authenticates as the chart's ServiceAccount, so the chart's
RBAC is what gets exercised, and reconciles examples/finetunejob.yaml into a Job.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import KubeCluster
from cryptography import x509
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from loraland import __version__
from loraland.controller.admission import kinds
from loraland.controller.config import OperatorConfig
from loraland.controller.rbac import operator_rules
from optools import (
    REPO,
    Objects,
    OperatorProcess,
    ftj_manifest,
    kubeconfig_for_token,
    pv_for_claim,
    service_account_token,
    sleep_briefly,
    until,
)

pytestmark = pytest.mark.integration

CHART = str(REPO / "charts" / "loraland")
#: Rights on cluster-scoped objects; everything else is used inside watched namespaces.
CLUSTER_SCOPED = {
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
}
WEBHOOK_RULES = {
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", verb)
    for verb in ("create", "patch")
}

Rule = tuple[str, str, str]
Helm = Callable[..., subprocess.CompletedProcess[str]]  # the `helm` fixture


def render(helm: Helm, *values: str, namespace: str = "loraland-system") -> list[dict[str, Any]]:
    args = ["template", "rel", CHART, "--namespace", namespace]
    for value in values:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def flatten(rules: Iterable[dict[str, Any]]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def bound_rules(docs: list[dict[str, Any]], binding_kind: str) -> set[Rule]:
    """Rules of the ClusterRoles that bindings of ``binding_kind`` grant the operator."""
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    out: set[Rule] = set()
    for binding in (d for d in docs if d["kind"] == binding_kind):
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert [s["name"] for s in binding["subjects"]] == ["rel-loraland"]
        out |= flatten(roles[binding["roleRef"]["name"]]["rules"])
    return out


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


# --------------------------------------------------------------------- rendering only


@pytest.mark.parametrize("values", [[], ["watchNamespaces={team-a,team-b}", "replicaCount=2"]])
def test_helm_lint_is_clean(helm: Helm, values: list[str]) -> None:
    args = ["lint", "--strict", CHART]
    for value in values:
        args += ["--set", value]
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_cluster_wide_rbac_is_exactly_the_operators_rules(helm: Helm) -> None:
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert bound_rules(docs, "ClusterRoleBinding") == flatten(operator_rules())
    # Without the webhook, no right on webhook configurations.
    off = render(helm, "webhook.enabled=false")
    assert bound_rules(off, "ClusterRoleBinding") == flatten(operator_rules()) - WEBHOOK_RULES


def test_namespaced_rbac_grants_namespaced_rights_only_in_watched_namespaces(helm: Helm) -> None:
    docs = render(helm, "watchNamespaces={team-a,team-b}")
    needed = flatten(operator_rules())
    cluster_wide = bound_rules(docs, "ClusterRoleBinding")
    per_namespace = bound_rules(docs, "RoleBinding")
    assert {(g, r) for g, r, _ in cluster_wide} <= CLUSTER_SCOPED
    assert not {(g, r) for g, r, _ in per_namespace} & CLUSTER_SCOPED
    # Everything the operator uses, except cluster-wide peering (it peers per namespace).
    assert cluster_wide | per_namespace == {
        rule for rule in needed if rule[1] != "clusterkopfpeerings"
    }
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_operator_deployment_is_hardened_and_configured(helm: Helm) -> None:
    docs = render(helm, "images.trainer.tag=dev", "peering.name=blue")
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    port = container["ports"][0]["containerPort"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in container["args"]
    assert "--all-namespaces" in container["args"]
    assert "--peering=blue" in container["args"]
    assert container["image"] == f"ghcr.io/loraland/operator:{__version__}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LORALAND_OPERATOR_TRAINER_IMAGE"] == "ghcr.io/loraland/trainer:dev"
    assert env["LORALAND_OPERATOR_TRAINER_CPU_IMAGE"] == "ghcr.io/loraland/trainer:dev-cpu"
    assert env["LORALAND_OPERATOR_SERVER_IMAGE"] == f"ghcr.io/loraland/server:{__version__}"


# ----------------------------------------------------------------- against the cluster


def peer_priorities(objects: Objects) -> list[int]:
    """Priorities of the live peers in the operator tests' ClusterKopfPeering."""
    try:
        peering = objects.custom.get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "loraland-test"
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return [int(peer.get("priority", 0)) for peer in (peering.get("status") or {}).values()]


def rules_review(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """SelfSubjectRulesReview as the kubeconfig's user: its effective rules in namespace."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        review = client.AuthorizationV1Api(api_client).create_self_subject_rules_review(
            client.V1SelfSubjectRulesReview(
                spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
            )
        )
    finally:
        api_client.close()
    assert not review.status.incomplete, review.status.evaluation_error
    return [
        {
            "apiGroups": rule.api_groups or [],
            "resources": rule.resources or [],
            "verbs": rule.verbs,
        }
        for rule in review.status.resource_rules
    ]


def test_template_passes_a_server_side_dry_run(
    helm: Helm, kube_cluster: KubeCluster, namespace: str
) -> None:
    for values in ([], [f"watchNamespaces={{{namespace}}}"]):
        args = ["template", "rel", CHART, "--namespace", namespace, "--include-crds"]
        for value in values:
            args += ["--set", value]
        manifest = helm(*args).stdout
        out = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
        assert "deployment.apps/rel-loraland created (server dry run)" in out.stdout


def test_helm_install_then_the_operator_reconciles_an_example(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    release = f"ll-{secrets.token_hex(3)}"
    fullname = f"{release}-loraland"
    kube_cluster.helm(
        "install", release, CHART, "--namespace", namespace, "--wait", "--timeout", "180s"
    )
    try:
        objects = Objects(kube_cluster)
        deployment = objects.apps.read_namespaced_deployment(fullname, namespace)
        assert deployment.status.ready_replicas == 1
        objects.core.read_namespaced_service_account(fullname, namespace)
        for crd in ("finetunejobs.loraland.dev", "adapterdeployments.loraland.dev"):
            kube_cluster.kubectl("get", "crd", crd)
        assert "sentiment" not in kube_cluster.kubectl("get", "ftj", "-n", namespace).stdout

        # The operator, authenticated as the chart's ServiceAccount. It joins the operator
        # tests' peering with a higher priority, so a session operator left running by
        # them stands by and this one does the work.
        token = service_account_token(kube_cluster, fullname, namespace)
        kubeconfig = kubeconfig_for_token(kube_cluster, token, tmp_path / "kc.yaml", namespace)
        proc = OperatorProcess(
            kubeconfig, tmp_path, "--peering", "loraland-test", "--priority", "1000"
        )
        proc.start()
        try:
            until(lambda: peer_priorities(objects).count(1000) == 1, "this operator's peer")
            # A lower-priority peer pauses when it sees this one (a watch event away).
            sleep_briefly(2)
            assert proc.alive(), proc.text()[-3000:]
            example = REPO / "examples" / "finetunejob.yaml"
            for doc in yaml.safe_load_all(example.read_text()):
                if doc and doc["kind"] == "PersistentVolumeClaim":
                    claim = doc["metadata"]["name"]
                    pv = pv_for_claim(f"pv-{namespace}-{claim}", claim, namespace)
                    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
            kube_cluster.kubectl("apply", "-n", namespace, "-f", str(example))
            jobs = until(lambda: objects.jobs(namespace, "sentiment"), "the trainer Job")
            assert jobs[0].metadata.owner_references[0].kind == "FineTuneJob"
            objects.wait_phase("finetunejobs", namespace, "sentiment", "Running", timeout=150)
            assert proc.alive(), proc.text()[-3000:]
        finally:
            proc.stop()
        log = proc.text()
        # RBAC denials read 'x is forbidden: User "system:serviceaccount:..." cannot ...'
        # (other 403s, e.g. writes into the terminating namespaces of earlier tests, are not
        # about the chart).
        assert "forbidden: User" not in log, log[-3000:]
        # This operator (not another peer) made the Job, with the chart's rights.
        assert f"created Job/sentiment-train for finetunejob {namespace}/sentiment" in log
        # What the API server really lets the chart's ServiceAccount do, in a watched
        # namespace: every right the operator needs.
        granted = flatten(rules_review(kubeconfig, namespace))
        missing = sorted(flatten(operator_rules()) - granted)
        assert not missing, f"the chart's ServiceAccount may not: {missing}"
    finally:
        kube_cluster.helm("uninstall", release, "--namespace", namespace, "--wait")


# ------------------------------------------------------------------------ the webhook


def webhook_args(container: dict[str, Any]) -> dict[str, str]:
    return dict(
        a.removeprefix("--").split("=", 1) for a in container["args"] if a.startswith("--webhook-")
    )


def tls_secret(docs: list[dict[str, Any]]) -> tuple[x509.Certificate, x509.Certificate]:
    secret = one(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert.verify_directly_issued_by(ca)
    assert b"PRIVATE KEY" in data["tls.key"]
    return cert, ca


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        *ext.get_values_for_type(x509.DNSName),
        *map(str, ext.get_values_for_type(x509.IPAddress)),
    ]


def test_webhook_renders_a_service_certificates_and_a_helm_owned_configuration(helm: Helm) -> None:
    docs = render(helm)
    configuration = one(docs, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["name"] == "rel-loraland.loraland-system.loraland.dev"
    assert configuration["webhooks"] == []  # the operator fills them in, with the CA bundle
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    cert, _ = tls_secret(docs)
    assert "rel-loraland-webhook.loraland-system.svc" in sans(cert)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert webhook_args(container) == {
        "webhook-listen": "0.0.0.0:9443",
        "webhook-service": "loraland-system/rel-loraland-webhook:443",
        "webhook-cert-dir": "/etc/loraland/webhook",
        "webhook-configuration": "rel-loraland.loraland-system.loraland.dev",
        "webhook-failure-policy": "Fail",
    }
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "rel-loraland-webhook-tls"
    # The patch right is limited to the chart's own configuration.
    cluster_role = next(d for d in docs if d["metadata"]["name"] == "rel-loraland-cluster")
    patch = [
        r
        for r in cluster_role["rules"]
        if "validatingwebhookconfigurations" in r["resources"] and "patch" in r["verbs"]
    ]
    assert patch[0]["resourceNames"] == ["rel-loraland.loraland-system.loraland.dev"]


def test_webhook_switches(helm: Helm) -> None:
    off = render(helm, "webhook.enabled=false")
    kinds = {d["kind"] for d in off}
    assert not kinds & {"ValidatingWebhookConfiguration", "Service", "Secret"}
    assert not webhook_args(one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0])

    cm = render(helm, "webhook.certManager.enabled=true", "webhook.failurePolicy=Ignore")
    assert not [d for d in cm if d["kind"] == "Secret"]
    certificate = one(cm, "Certificate")
    assert certificate["spec"]["secretName"] == "rel-loraland-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "rel-loraland-webhook"}
    assert one(cm, "Issuer")["spec"] == {"selfSigned": {}}
    args = webhook_args(one(cm, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert args["webhook-failure-policy"] == "Ignore"

    url = render(helm, "webhook.url=https://127.0.0.1:9443")
    assert not [d for d in url if d["kind"] == "Service"]
    cert, _ = tls_secret(url)
    assert "127.0.0.1" in sans(cert)
    args = webhook_args(one(url, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert args["webhook-url"] == "https://127.0.0.1:9443" and "webhook-service" not in args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_charts_webhook_refuses_invalid_resources_and_fails_closed(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    """The chart's webhook with the operator outside the cluster (webhook.url).

    The operator runs on this host (kwok pods run nothing) with exactly the webhook
    arguments of the chart's Deployment, the chart's certificate Secret as its mounted
    files, and the chart's ServiceAccount: it fills the chart's configuration in.
    """
    release = f"wh-{secrets.token_hex(3)}"
    fullname = f"{release}-loraland"
    port = free_port()
    kube_cluster.helm(
        "install",
        release,
        CHART,
        "--namespace",
        namespace,
        "--set",
        f"webhook.url=https://127.0.0.1:{port}",
        "--set",
        f"webhook.port={port}",
        "--wait",
        "--timeout",
        "180s",
    )
    configuration = f"{fullname}.{namespace}.loraland.dev"
    try:
        objects = Objects(kube_cluster)
        deployment = objects.apps.read_namespaced_deployment(fullname, namespace)
        args = [
            a
            for a in deployment.spec.template.spec.containers[0].args
            if a.startswith("--webhook-")
        ]
        secret = objects.core.read_namespaced_secret(f"{fullname}-webhook-tls", namespace)
        certs = tmp_path / "webhook"
        certs.mkdir()
        for key, value in secret.data.items():
            (certs / key).write_bytes(base64.b64decode(value))
        assert f"--webhook-listen=0.0.0.0:{port}" in args, args
        # The pod's volume is a directory here; and servers in these tests listen on the
        # loopback interface only (the chart's pod listens on every interface).
        args = [
            f"--webhook-cert-dir={certs}"
            if a.startswith("--webhook-cert-dir=")
            else a.replace("--webhook-listen=0.0.0.0:", "--webhook-listen=127.0.0.1:")
            for a in args
        ]
        token = service_account_token(kube_cluster, fullname, namespace)
        kubeconfig = kubeconfig_for_token(kube_cluster, token, tmp_path / "kc.yaml", namespace)
        # It outranks the session operator in the operator tests' peering (as the install
        # test above does), so only one operator reconciles.
        proc = OperatorProcess(
            kubeconfig, tmp_path, "--peering", "loraland-test", "--priority", "1000", *args
        )
        proc.start()
        bad = ftj_manifest("bad", baseModel={"uri": "builtin://nope"}, dataset={"task": "nope"})
        good = ftj_manifest("good")

        def configured() -> bool:
            out = kube_cluster.kubectl(
                "get", "validatingwebhookconfiguration", configuration, "-o", "json"
            ).stdout
            hooks = json.loads(out).get("webhooks") or []
            one_per_kind = len(hooks) == len(kinds(OperatorConfig()))
            return one_per_kind and all(h["clientConfig"].get("caBundle") for h in hooks)

        try:
            until(
                configured, "the operator filling in the chart's webhook configuration", timeout=60
            )
            result = kube_cluster.kubectl(
                "apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False
            )
            assert result.returncode != 0, "an invalid FineTuneJob got in"
            assert "spec.baseModel.uri" in result.stderr and "spec.dataset.task" in result.stderr
            kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(good))
        finally:
            proc.stop()
        log = proc.text()
        assert "forbidden: User" not in log, log[-3000:]
        # The operator is gone; its webhooks stay and fail closed.
        result = kube_cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False
        )
        assert result.returncode != 0 and "failed calling webhook" in result.stderr, result.stderr
    finally:
        kube_cluster.helm("uninstall", release, "--namespace", namespace, "--wait")
    # Uninstalled: the configuration went with the release, and nothing is refused.
    gone = kube_cluster.kubectl("get", "validatingwebhookconfiguration", configuration, check=False)
    assert gone.returncode != 0
    bad["metadata"]["name"] = "bad-after-uninstall"
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad))
