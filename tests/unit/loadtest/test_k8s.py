"""Distributed Locust manifests: pure builders, and the checked-in example in sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from loraland.loadtest.k8s import (
    MASTER_PORT,
    WEB_PORT,
    LocustCluster,
    build_manifests,
    to_yaml,
)
from loraland.loadtest.options import LoadOptions
from loraland.loadtest.sweep import BUNDLED_LOCUSTFILE
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[3]


def _spec(**kwargs: object) -> LocustCluster:
    options = LoadOptions.from_flags(api="openai", adapters="ad-{0..2}", adapter_dist="zipf")
    defaults: dict[str, object] = {
        "host": "http://adep.ns.svc",
        "users": 32,
        "workers": 3,
        "options": options,
    }
    return LocustCluster(**{**defaults, **kwargs})


def _by_kind(manifests: list[dict]) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_objects_and_wiring() -> None:
    manifests = build_manifests(_spec(namespace="perf", run_time="5m"))
    objects = _by_kind(manifests)
    assert list(objects) == [
        ("ConfigMap", "loadtest-locustfile"),
        ("Service", "loadtest-master"),
        ("Deployment", "loadtest-master"),
        ("Deployment", "loadtest-worker"),
    ]
    assert all(m["metadata"]["namespace"] == "perf" for m in manifests)
    assert (
        objects["ConfigMap", "loadtest-locustfile"]["data"]["locustfile.py"]
        == BUNDLED_LOCUSTFILE.read_text()
    )

    service = objects["Service", "loadtest-master"]["spec"]
    master = objects["Deployment", "loadtest-master"]["spec"]
    workers = objects["Deployment", "loadtest-worker"]["spec"]
    assert {p["port"] for p in service["ports"]} == {MASTER_PORT, WEB_PORT}
    assert service["selector"] == master["template"]["metadata"]["labels"]
    assert master["selector"]["matchLabels"] == master["template"]["metadata"]["labels"]
    assert workers["selector"]["matchLabels"] != master["selector"]["matchLabels"]
    assert master["replicas"] == 1 and workers["replicas"] == 3

    m_container = master["template"]["spec"]["containers"][0]
    w_container = workers["template"]["spec"]["containers"][0]
    assert m_container["command"] == ["locust"]
    m_args = " ".join(m_container["args"])
    assert (
        m_args
        == "--master --host http://adep.ns.svc --autostart --users 32 --spawn-rate 32 --run-time 5m"
    )
    assert w_container["args"] == [
        "--worker",
        "--master-host",
        "loadtest-master",
        "--master-port",
        "5557",
    ]
    for container in (m_container, w_container):
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["LOCUST_LOCUSTFILE"] == "/etc/locust/locustfile.py"
        assert env["LORALAND_LOADTEST_API"] == "openai"
        assert env["LORALAND_LOADTEST_ADAPTERS"] == "ad-0,ad-1,ad-2"
        assert env["LORALAND_LOADTEST_ADAPTER_DIST"] == "zipf"
        assert container["volumeMounts"][0]["mountPath"] == "/etc/locust"
    volume = master["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == "loadtest-locustfile"


def test_no_namespace_means_the_current_one() -> None:
    assert all("namespace" not in m["metadata"] for m in build_manifests(_spec()))


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"users": 0}, {"name": "Bad_Name"}, {"host": ""}, {"spawn_rate": 0}],
)
def test_bad_specs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _spec(**kwargs)


def test_yaml_round_trips_and_keeps_the_locustfile_readable() -> None:
    text = to_yaml(build_manifests(_spec()))
    assert list(yaml.safe_load_all(text)) == build_manifests(_spec())
    assert "locustfile.py: |" in text


def test_checked_in_example_matches_the_command(tmp_path: Path) -> None:
    from loraland.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app,
        [
            "loadtest", "k8s", "--host", "http://my-adapters.default.svc", "--users", "64",
            "--workers", "4", "--adapters", "ad-{0..99}", "--adapter-dist", "zipf",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    example = (REPO / "loadtests" / "k8s" / "locust.yaml").read_text()
    body = "".join(line for line in example.splitlines(keepends=True) if not line.startswith("#"))
    assert body == result.output


def test_headless_runs_master_and_workers_as_jobs_placed_where_asked() -> None:
    from loraland.loadtest.k8s import Toleration

    spec = _spec(
        headless=True,
        run_time="45s",
        node_selector={"pool": "load"},
        tolerations=(Toleration.parse("dedicated=load:NoSchedule"),),
    )
    objects = _by_kind(build_manifests(spec))
    assert list(objects) == [
        ("ConfigMap", "loadtest-locustfile"),
        ("Service", "loadtest-master"),
        ("Job", "loadtest-master"),
        ("Job", "loadtest-worker"),
    ]
    master = objects["Job", "loadtest-master"]["spec"]
    workers = objects["Job", "loadtest-worker"]["spec"]
    # One measurement: never retried. Workers run alongside, as many as asked.
    assert master["backoffLimit"] == 0 and master["template"]["spec"]["restartPolicy"] == "Never"
    assert workers["parallelism"] == workers["completions"] == 3
    assert workers["template"]["spec"]["restartPolicy"] == "OnFailure"
    service = objects["Service", "loadtest-master"]["spec"]
    assert service["selector"] == master["template"]["metadata"]["labels"]
    for job in (master, workers):
        pod = job["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "load"}
        assert pod["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "load", "effect": "NoSchedule"}
        ]
    container = master["template"]["spec"]["containers"][0]
    assert container["command"] == ["loraland"]
    args = container["args"]
    assert args[:2] == ["loadtest", "sweep"] and "--print-summary" in args
    assert "--locust-arg=--master" in args and "--locust-arg=--expect-workers=3" in args
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in master["template"]["spec"]["volumes"]}
    assert set(mounts) == volumes == {"locustfile", "report"}


def test_the_headless_master_command_parses_with_the_real_sweep_cli() -> None:
    """Every flag the Job passes is one `loraland loadtest sweep` accepts: the run gets as far
    as checking that its host answers (nothing listens on port 9 here)."""
    from loraland.cli import app
    from typer.testing import CliRunner

    spec = _spec(host="http://127.0.0.1:9", headless=True, run_time="30s")
    master = _by_kind(build_manifests(spec))["Job", "loadtest-master"]
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "--host: cannot reach http://127.0.0.1:9" in str(result.exception or result.output)


def test_headless_needs_a_run_time_and_the_cli_names_the_flag() -> None:
    from loraland.cli import app
    from typer.testing import CliRunner

    with pytest.raises(ValidationError, match="run_time"):
        _spec(headless=True)
    result = CliRunner().invoke(app, ["loadtest", "k8s", "--host", "http://x", "--headless"])
    assert result.exit_code != 0
    assert "--run-time: a headless run needs one" in str(result.exception or result.output)


@pytest.mark.parametrize(
    ("text", "manifest"),
    [
        ("gpu", {"key": "gpu", "operator": "Exists"}),
        ("gpu:NoSchedule", {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}),
        ("a=b", {"key": "a", "operator": "Equal", "value": "b"}),
        ("a=b:NoExecute", {"key": "a", "operator": "Equal", "value": "b", "effect": "NoExecute"}),
    ],
)
def test_toleration_flags_spell_like_kubectl_taint(text: str, manifest: dict[str, str]) -> None:
    from loraland.loadtest.k8s import Toleration

    assert Toleration.parse(text).manifest() == manifest


@pytest.mark.parametrize("text", ["", ":NoSchedule", "a=b:Sometimes"])
def test_bad_tolerations_are_refused(text: str) -> None:
    from loraland.loadtest.k8s import Toleration

    with pytest.raises(ValidationError):
        Toleration.parse(text)
