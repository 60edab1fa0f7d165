"""``loraland operator ...`` and ``loraland crds ...`` commands.

* ``loraland operator run``: the Kopf operator (``--namespace`` repeatable, or
  ``--all-namespaces``; ``--peering NAME`` so several replicas elect one active peer).
* ``loraland operator relay-progress``: the training pod's sidecar (see relay.py).
* ``loraland operator rbac``: the ClusterRole the operator needs, as YAML.
* ``loraland crds generate``: write crds/ from the pydantic models (``--check``: fail
  when the files differ instead of writing them).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Annotated, Any, cast

import typer
import yaml

from loraland.controller.errors import OperatorError

operator_app = typer.Typer(help="Run the loraland operator and its helpers.", no_args_is_help=True)
crds_app = typer.Typer(
    help="CustomResourceDefinitions generated from the API models.", no_args_is_help=True
)

DEFAULT_CRDS_DIR = Path("crds")


def _api_client(kubeconfig: Path | None) -> Any:
    """One client for our calls and Kopf's: in-cluster, else the kubeconfig."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            raise config.ConfigException("kubeconfig given")
    except config.ConfigException:
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError) as exc:
            raise OperatorError(f"no Kubernetes credentials: {exc}") from None
    return client.ApiClient(configuration)


def _connection_info(api_client: Any) -> Any:
    import kopf

    cfg = api_client.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = (None, None)
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _ensure_peering(kube: Any, name: str, namespaces: list[str]) -> None:
    """Kopf needs its peering object to exist; make it (adopting one that does)."""
    from kubernetes.client.exceptions import ApiException

    targets: list[tuple[str, str | None]] = (
        [("/apis/kopf.dev/v1/clusterkopfpeerings", None)]
        if not namespaces
        else [(f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings", ns) for ns in namespaces]
    )
    for path, ns in targets:
        meta: dict[str, Any] = {"name": name}
        if ns:
            meta["namespace"] = ns
        kind = "KopfPeering" if ns else "ClusterKopfPeering"
        try:
            kube.request(
                "POST", path, {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": meta}
            )
        except ApiException as exc:
            if exc.status != 409:
                raise OperatorError(f"cannot create {kind} {name}: {exc.reason}") from None


@operator_app.command("run")
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch this namespace (repeatable)."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")
    ] = False,
    peering: Annotated[
        str | None,
        typer.Option("--peering", help="Kopf peering name: replicas elect one active peer."),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option("--priority", help="Peering priority (default: random per process)."),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Default: in-cluster, else KUBECONFIG.")
    ] = None,
    liveness: Annotated[
        str | None,
        typer.Option("--liveness", help="Serve a health probe, e.g. http://0.0.0.0:8080/healthz"),
    ] = None,
    trainer_image: Annotated[str | None, typer.Option("--trainer-image")] = None,
    server_image: Annotated[str | None, typer.Option("--server-image")] = None,
    relay_image: Annotated[str | None, typer.Option("--relay-image")] = None,
    adapter_poll_seconds: Annotated[float | None, typer.Option("--adapter-poll-seconds")] = None,
    resync_seconds: Annotated[float | None, typer.Option("--resync-seconds")] = None,
    webhook_listen: Annotated[
        str | None,
        typer.Option(
            "--webhook-listen",
            help="Serve the validating admission webhook on HOST:PORT (e.g. 0.0.0.0:9443).",
        ),
    ] = None,
    webhook_service: Annotated[
        str | None,
        typer.Option(
            "--webhook-service",
            help="The API server reaches the webhook through this Service: NAMESPACE/NAME[:PORT].",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url", help="...or at this https URL (an operator outside the cluster)."
        ),
    ] = None,
    webhook_cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--webhook-cert-dir",
            help="tls.crt, tls.key (and ca.crt) to serve with; default: a fresh self-signed CA.",
        ),
    ] = None,
    webhook_configuration: Annotated[
        str | None,
        typer.Option(
            "--webhook-configuration",
            help="ValidatingWebhookConfiguration Kopf keeps up to date (a name with dots, "
            "default loraland-operator.loraland.dev).",
        ),
    ] = None,
    webhook_failure_policy: Annotated[
        str | None,
        typer.Option("--webhook-failure-policy", help="Fail (default) or Ignore."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator until interrupted."""
    import tempfile

    import kopf

    from loraland.controller.adapterdeployments import AdapterDeployments
    from loraland.controller.admission import kinds
    from loraland.controller.config import OperatorConfig
    from loraland.controller.finetunejobs import FineTuneJobs
    from loraland.controller.handlers import build_registry
    from loraland.controller.kube import Kube
    from loraland.controller.studies import FineTuneStudies
    from loraland.controller.webhook import WebhookOptions, publisher, server

    namespaces = list(namespace or [])
    webhook = None
    if webhook_listen is not None:
        webhook = WebhookOptions.from_flags(
            webhook_listen,
            url=webhook_url,
            service=webhook_service,
            cert_dir=webhook_cert_dir,
            configuration=webhook_configuration,
            failure_policy=webhook_failure_policy,
        )
    elif any((webhook_url, webhook_service, webhook_cert_dir, webhook_configuration)):
        raise OperatorError("the --webhook-* options need --webhook-listen HOST:PORT")
    if bool(namespaces) == all_namespaces:
        raise OperatorError(
            "give --namespace NS (repeatable) or --all-namespaces, not both or neither"
        )
    config = OperatorConfig.from_env(
        trainer_image=trainer_image,
        server_image=server_image,
        relay_image=relay_image,
        adapter_poll_seconds=adapter_poll_seconds,
        resync_seconds=resync_seconds,
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    api_client = _api_client(kubeconfig)
    kube = Kube(api_client)

    def emit(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        kopf.event(cast(Any, body), type=type_, reason=reason, message=message[:1000])

    ftjs = FineTuneJobs(kube, config, emit)
    adeps = AdapterDeployments(kube, config, emit)
    studies = FineTuneStudies(kube, config, emit)
    registry = build_registry(
        ftjs,
        adeps,
        studies,
        resync=config.resync_seconds,
        poll=config.adapter_poll_seconds,
        validated=kinds(config).values() if webhook else (),
    )
    # The self-signed certificate, when no --webhook-cert-dir gives one (read-only root
    # filesystem in the pod: /tmp is its writable volume).
    scratch = Path(tempfile.mkdtemp(prefix="loraland-webhook-")) if webhook else Path()
    connection = _connection_info(api_client)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> Any:
        return connection

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress in annotations only: the CRD schema has no room for Kopf's status keys.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="loraland.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="loraland.dev", key="last-handled-configuration"
        )
        settings.persistence.finalizer = "loraland.dev/operator"
        settings.posting.level = logging.INFO
        settings.execution.max_workers = config.max_workers
        settings.networking.request_timeout = 60
        settings.watching.server_timeout = 300
        if webhook is not None:
            publish = publisher(kube, webhook, kinds(config).values())
            settings.admission.server = server(webhook, scratch, publish)

    if peering:
        _ensure_peering(kube, peering, namespaces)
    kopf.run(
        registry=registry,
        clusterwide=all_namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=priority if priority is not None else random.randint(1, 2**31 - 1),
        liveness_endpoint=liveness,
    )


@operator_app.command("relay-progress")
def relay_progress(
    ftj: Annotated[str, typer.Option("--ftj", help="The FineTuneJob whose status to patch.")],
    namespace: Annotated[str, typer.Option("--namespace", help="Its namespace.")],
    file: Annotated[
        Path, typer.Option("--file", help="Progress JSON lines (the trainer's --progress-file).")
    ],
    result: Annotated[Path, typer.Option("--result", help="The trainer's --result-file.")],
    adapter_name: Annotated[str | None, typer.Option("--adapter-name")] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 2.0,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Default: in-cluster.")
    ] = None,
    termination_log: Annotated[
        Path | None,
        typer.Option("--termination-log", help="Where to copy the result for the operator."),
    ] = Path("/dev/termination-log"),
) -> None:
    """Tail the trainer's files and patch this one FineTuneJob's status until SIGTERM."""
    from loraland.controller.kube import Kube
    from loraland.controller.relay import Relay, run_until_signalled

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    relay = Relay(
        kube=Kube(_api_client(kubeconfig)),
        name=ftj,
        namespace=namespace,
        progress_file=file,
        result_file=result,
        adapter_name=adapter_name,
        termination_log=termination_log,
    )
    run_until_signalled(relay, interval)


@operator_app.command("rbac")
def rbac(name: Annotated[str, typer.Option("--name")] = "loraland-operator") -> None:
    """Print the ClusterRole the operator needs (for the Helm chart and manual installs)."""
    from loraland.controller.rbac import cluster_role

    typer.echo(yaml.safe_dump(cluster_role(name), sort_keys=False), nl=False)


@crds_app.command("generate")
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write.")
    ] = DEFAULT_CRDS_DIR,
    check: Annotated[
        bool, typer.Option("--check", help="Only compare; exit 1 when stale.")
    ] = False,
) -> None:
    """Write (or check) crds/*.yaml from operator/loraland/api."""
    from loraland.api.crd import render_all

    files = render_all()
    stale = []
    for name, text in files.items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(name)
            if not check:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    extra = (
        sorted(p.name for p in out.glob("*.yaml") if p.name not in files) if out.is_dir() else []
    )
    if check:
        if stale or extra:
            typer.echo(
                f"{out}/ is stale: {', '.join(stale + extra)} differ; run `make crds`", err=True
            )
            raise typer.Exit(1)
        typer.echo(f"{out}/ is up to date ({len(files)} files)")
        return
    for name in extra:
        typer.echo(f"note: {out / name} is not generated; left alone", err=True)
    typer.echo(f"wrote {len(stale)} of {len(files)} files to {out}/")
