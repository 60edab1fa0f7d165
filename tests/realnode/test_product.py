"""The product as a user runs it, in real pods on the real node, from the project's images.

`helm install` of charts/loraland with the images `make images` built (pushed to the
node's registry), then one FineTuneJob on the embedded model whose adapter goes to a
``pvc://`` output on a provisioned volume and reaches an AdapterDeployment through
``deployTo``; its server pod answers through the Service with that adapter, differently
from the base model. The tests share one release and run in order (module-scoped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from loraland.loadtest.sweep import summary_from_log
from realnode import REAL_NODE_SELECTOR, REAL_NODE_TOLERATION
from realtools import (
    PYTHON_GET,
    RealCluster,
    apply,
    exec_in,
    wait_for_service,
    wait_ready,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "loraland"
IMAGES_SH = Path(os.environ.get("LORALAND_IMAGES_SH") or REPO / "hack" / "images.sh")
GROUP, VERSION = "loraland.dev", "v1alpha1"
FTJ = "sentiment"
ADEP = "smollm2"
# Long enough that deleting the trainer pod after its first checkpoints lands while it
# still trains, also on an idle machine (with 12 steps the first pod once finished first).
STEPS = 40
CHECKPOINT_EVERY = 2

pytestmark = pytest.mark.timeout(1500)


def split_ref(ref: str) -> tuple[str, str]:
    """``host:port/repo:tag`` -> (``host:port/repo``, ``tag``)."""
    repository, _, tag = ref.rpartition(":")
    return repository, tag


@pytest.fixture(scope="module")
def images(real_cluster: RealCluster) -> dict[str, str]:
    """The project's images in the node's registry (`make images` builds them; a warm run
    only pushes what the registry lacks)."""
    if not IMAGES_SH.exists():
        pytest.fail(f"{IMAGES_SH} is missing: the images come from `make images`", pytrace=False)
    done = subprocess.run(
        [str(IMAGES_SH), "--registry", real_cluster.real_node.network.registry],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{IMAGES_SH} failed:\n{done.stderr[-4000:]}", pytrace=False)
    values = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and line[0] != "#"
    )
    return {k: values[f"LORALAND_IMAGE_{k.upper()}"] for k in ("operator", "trainer", "server")}


@pytest.fixture(scope="module")
def release(
    real_cluster: RealCluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """charts/loraland installed with the local images, its pods on the real node; yields
    the namespace (the operator watches every namespace)."""
    operator_repo, operator_tag = split_ref(images["operator"])
    trainer_repo, trainer_tag = split_ref(images["trainer"])
    server_repo, server_tag = split_ref(images["server"])
    values = {
        "images": {
            "operator": {"repository": operator_repo, "tag": operator_tag},
            # The CPU tags end in the chart's cpuSuffix, which the chart adds itself.
            "trainer": {"repository": trainer_repo, "tag": trainer_tag.removesuffix("-cpu")},
            "server": {"repository": server_repo, "tag": server_tag.removesuffix("-cpu")},
            "cpuSuffix": "-cpu",
        },
        "nodeSelector": dict(REAL_NODE_SELECTOR),
        "tolerations": [dict(REAL_NODE_TOLERATION)],
        "operator": {"adapterPollSeconds": 3, "resyncSeconds": 10},
    }
    values_file = tmp_path_factory.mktemp("helm") / "values.json"
    values_file.write_text(json.dumps(values))
    with real_cluster.fresh_namespace("ll") as ns:
        try:
            real_cluster.helm(
                "install", "ll", str(CHART), "--namespace", ns, "-f", str(values_file),
                "--wait", "--timeout", "600s", timeout=700,
            )  # fmt: skip
            yield ns
        finally:
            real_cluster.helm("uninstall", "ll", "--namespace", ns, "--wait", check=False)


def custom(cluster: RealCluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def status_of(cluster: RealCluster, plural: str, ns: str, name: str) -> dict[str, Any]:
    obj = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    return dict(obj.get("status") or {})


def placement() -> dict[str, Any]:
    return {"nodeSelector": dict(REAL_NODE_SELECTOR), "tolerations": [dict(REAL_NODE_TOLERATION)]}


def test_operator_runs_as_a_pod_ready_through_its_probes(
    real_cluster: RealCluster, release: str
) -> None:
    pods = (
        client.CoreV1Api(real_cluster.api_client)
        .list_namespaced_pod(release, label_selector="app.kubernetes.io/component=operator")
        .items
    )
    (pod,) = pods
    assert pod.spec.node_name == real_cluster.real_node.name
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "True"
    (container,) = pod.status.container_statuses
    assert container.ready and container.restart_count == 0


def test_finetunejob_trains_in_a_pod_and_publishes_to_a_provisioned_pvc(
    real_cluster: RealCluster, release: str
) -> None:
    ns = release
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "adapters", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    adep = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AdapterDeployment",
        "metadata": {"name": ADEP, "namespace": ns},
        "spec": {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "replicas": 1,
            "resources": {"gpus": 0, "cpu": "500m", "memory": "3Gi", **placement()},
            "serving": {"maxBatchSize": 4},
        },
    }
    ftj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": FTJ, "namespace": ns},
        "spec": {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "sentiment", "maxSamples": 200},
            "lora": {"rank": 8, "alpha": 16},
            "training": {
                "maxSteps": STEPS,
                "batchSize": 4,
                "learningRate": 0.002,
                "maxSeqLength": 64,
                "checkpointEverySteps": CHECKPOINT_EVERY,
                "seed": 1,
            },
            "evaluation": {"maxSamples": 16, "compareBase": True},
            "output": {"uri": f"pvc://adapters/{FTJ}"},
            "resources": {"gpus": 0, "cpu": "1", "memory": "3Gi", **placement()},
            "deployTo": {"adapterDeployment": ADEP},
        },
    }
    apply(real_cluster, claim, adep, ftj)

    # Progress shows while the trainer runs (the relay sidecar patches it from inside).
    def progressing() -> bool:
        progress = status_of(real_cluster, "finetunejobs", ns, FTJ).get("progress") or {}
        return bool(progress.get("step"))

    wait_until(progressing, "training progress in the FineTuneJob", 900, real_cluster)
    listing = real_cluster.kubectl("get", "ftj", "-n", ns, FTJ).stdout
    assert f"/{STEPS}" in listing, listing
    first_pod, job_uid = interrupt_training(real_cluster, ns)

    # Trainer pods are recorded while the job runs: the Job's pods are not the test's to keep
    # once it has finished.
    core = client.CoreV1Api(real_cluster.api_client)
    seen: dict[str, str] = {}

    def finished() -> dict[str, Any] | None:
        for pod in core.list_namespaced_pod(
            ns, label_selector=f"loraland.dev/finetunejob={FTJ}"
        ).items:
            if pod.spec.node_name:  # a poll may catch a pod before it is scheduled
                seen[pod.metadata.name] = pod.spec.node_name
        status = status_of(real_cluster, "finetunejobs", ns, FTJ)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_until(finished, "the FineTuneJob to finish", 1200, real_cluster)
    assert status["phase"] == "Succeeded", json.dumps(status)[:3000]
    scores = status["scores"]
    assert scores["adapter"] is not None and scores["base"] is not None
    assert status["adapter"]["uri"] == f"pvc://adapters/{FTJ}"
    retries = sorted(name for name in seen if name != first_pod)
    assert retries, seen
    assert set(seen.values()) == {real_cluster.real_node.name}, seen
    pvc = core.read_namespaced_persistent_volume_claim("adapters", ns)
    assert pvc.status.phase == "Bound" and pvc.spec.storage_class_name == "local-path"

    # The deleted trainer (PID 1 in its container) took the SIGTERM: it checkpointed the
    # step it was in on the PVC and exited 143, so the Job counted a failed pod and its retry
    # resumed there; status says at which step. Past the step the deletion waited for; the
    # last step when the deletion found the first pod scoring (status lags the trainer).
    step = status["progress"].get("resumedFromStep")
    assert step is not None and CHECKPOINT_EVERY < step <= STEPS, json.dumps(status)[:3000]
    # The operator pod that came back adopted the Job instead of making a second one.
    jobs = (
        client.BatchV1Api(real_cluster.api_client)
        .list_namespaced_job(ns, label_selector=f"loraland.dev/finetunejob={FTJ}")
        .items
    )
    assert [j.metadata.uid for j in jobs] == [job_uid]
    assert jobs[0].status.failed == 1 and jobs[0].status.succeeded == 1


def interrupt_training(cluster: RealCluster, ns: str) -> tuple[str, str]:
    """Once a checkpoint is on the PVC, delete the trainer pod and the operator pod; returns
    the deleted trainer pod's name and the Job's uid."""
    core = client.CoreV1Api(cluster.api_client)

    def checkpointed() -> bool:
        progress = status_of(cluster, "finetunejobs", ns, FTJ).get("progress") or {}
        # Step k is reported after its checkpoint (every CHECKPOINT_EVERY steps) is written.
        return int(progress.get("step") or 0) > CHECKPOINT_EVERY

    wait_until(checkpointed, f"training past step {CHECKPOINT_EVERY}", 900, cluster)
    (job,) = (
        client.BatchV1Api(cluster.api_client)
        .list_namespaced_job(ns, label_selector=f"loraland.dev/finetunejob={FTJ}")
        .items
    )
    (trainer,) = core.list_namespaced_pod(
        ns, label_selector=f"loraland.dev/finetunejob={FTJ}"
    ).items
    (operator,) = core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=operator"
    ).items
    core.delete_namespaced_pod(trainer.metadata.name, ns)
    core.delete_namespaced_pod(operator.metadata.name, ns)
    return str(trainer.metadata.name), str(job.metadata.uid)


@pytest.fixture(scope="module")
def client_pod(real_cluster: RealCluster, release: str, images: dict[str, str]) -> str:
    """A small pod from the server image (it has Python) that sends the test's requests,
    as another workload in the cluster would, so the servers' own pods are left alone."""
    name = "client"
    apply(
        real_cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": release},
            "spec": {
                **placement(),
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "containers": [
                    {
                        "name": "client",
                        "image": images["server"],
                        "command": ["sleep", "infinity"],
                        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                    }
                ],
            },
        },
    )
    wait_ready(real_cluster, release, name)
    return name


def generate(cluster: RealCluster, ns: str, client_pod: str, url: str, adapter: str | None) -> str:
    """POST ``url``/generate from the client pod; the greedy text."""
    parameters: dict[str, Any] = {"max_new_tokens": 12, "do_sample": False}
    if adapter:
        parameters["adapter_id"] = adapter
    body = json.dumps({"inputs": "Review: I loved it, works great.\nSentiment:",
                       "parameters": parameters})  # fmt: skip
    script = (
        "import sys,urllib.request as u;"
        "r=u.Request(sys.argv[1]+'/generate',data=sys.argv[2].encode(),"
        "headers={'content-type':'application/json'});"
        "print(u.urlopen(r,timeout=120).read().decode())"
    )
    out = exec_in(cluster, ns, client_pod, "python", "-c", script, url, body)
    return str(json.loads(out)["generated_text"])


def test_adapter_is_loaded_and_answers_through_the_service(
    real_cluster: RealCluster, release: str, client_pod: str
) -> None:
    ns = release

    def loaded() -> bool:
        status = status_of(real_cluster, "adapterdeployments", ns, ADEP)
        states = {a.get("name"): a.get("state") for a in status.get("adapters") or []}
        return states.get(FTJ) == "Loaded" and status.get("phase") == "Ready"

    wait_until(loaded, f"adapter {FTJ} Loaded in {ADEP}", 600, real_cluster)
    # Serving an adapter from a new claim mounts it: the Deployment rolls out a new pod.
    real_cluster.kubectl(
        "rollout", "status", "-n", ns, f"deployment/{ADEP}", "--timeout=600s", timeout=660
    )
    # Through the Service by name: the cluster DNS, then kube-proxy to the server pod.
    service = f"http://{ADEP}.{ns}.svc.cluster.local"
    wait_for_service(real_cluster, ns, client_pod, f"{service}/health", get=PYTHON_GET)
    base = generate(real_cluster, ns, client_pod, service, None)
    tuned = generate(real_cluster, ns, client_pod, service, FTJ)
    assert tuned != base, (base, tuned)
    pods = [
        p
        for p in client.CoreV1Api(real_cluster.api_client)
        .list_namespaced_pod(ns, label_selector=f"loraland.dev/adapterdeployment={ADEP}")
        .items
        if p.metadata.deletion_timestamp is None
    ]
    assert pods
    for pod in pods:
        assert pod.spec.node_name == real_cluster.real_node.name
        assert all(c.restart_count == 0 for c in pod.status.container_statuses), pod.status


def test_in_cluster_locust_reports_what_users_feel(
    real_cluster: RealCluster, release: str, images: dict[str, str]
) -> None:
    """`loraland loadtest k8s --headless | kubectl apply -f -` as a user runs it: a Locust
    master and worker in pods (the server image) drive the AdapterDeployment's Service with
    the trained adapter, and the master's log carries the report."""
    ns = release
    taint = REAL_NODE_TOLERATION["key"] + ":" + REAL_NODE_TOLERATION["effect"]  # Exists
    rendered = subprocess.run(
        [
            str(Path(sys.executable).with_name("loraland")), "loadtest", "k8s",
            "--name", "lt", "--namespace", ns, "--host", f"http://{ADEP}.{ns}.svc",
            "--image", images["server"], "--headless", "--run-time", "40s",
            "--users", "2", "--workers", "1", "--worker-cpu", "250m",
            "--adapters", FTJ, "--prompt-words", "20-30", "--max-new-tokens", "8",
            "--seed", "7",
            *(f"--node-selector={k}={v}" for k, v in REAL_NODE_SELECTOR.items()),
            f"--toleration={taint}",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    real_cluster.kubectl("apply", "-f", "-", input=rendered)
    done = real_cluster.kubectl(
        "wait", "-n", ns, "job/lt-master", "--for=condition=complete", "--timeout=600s",
        check=False, timeout=660,
    )  # fmt: skip
    log = real_cluster.kubectl("logs", "-n", ns, "job/lt-master", check=False).stdout
    assert done.returncode == 0, f"{done.stderr}\n{log[-3000:]}"
    report = summary_from_log(log)
    (level,) = report.levels
    assert level.users == 2 and level.completed > 0 and level.failed == 0, level
    for measured in (
        level.time_to_first_token_ms,
        level.total_request_time_ms,
        level.token_streaming_time_ms,
        level.tokens_per_s_per_user,
    ):
        assert measured is not None and measured.mean > 0, level
    assert level.aggregate_tokens_per_s > 0
    # Locust told its worker to quit at the end: the worker Job completes too.
    real_cluster.kubectl(
        "wait", "-n", ns, "job/lt-worker", "--for=condition=complete", "--timeout=120s",
        timeout=180,
    )  # fmt: skip


def test_scaled_to_two_both_pods_serve_it_also_when_added_by_hand(
    real_cluster: RealCluster, release: str, client_pod: str
) -> None:
    """A user adds the published adapter by hand (its pvc:// URI, another name) and scales
    to two replicas: each pod answers with both names, the same greedy text."""
    ns = release
    adep = custom(real_cluster).get_namespaced_custom_object(
        GROUP, VERSION, ns, "adapterdeployments", ADEP
    )
    adapters = [*adep["spec"]["adapters"], {"name": "by-hand", "uri": f"pvc://adapters/{FTJ}"}]
    custom(real_cluster).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "adapterdeployments", ADEP,
        {"spec": {"replicas": 2, "adapters": adapters}},
    )  # fmt: skip
    selector = f"loraland.dev/adapterdeployment={ADEP}"
    core = client.CoreV1Api(real_cluster.api_client)

    def two_ready() -> list[Any]:
        pods = core.list_namespaced_pod(ns, label_selector=selector).items
        ready = [
            p
            for p in pods
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready if len(ready) == 2 else []

    def both_loaded() -> bool:
        status = status_of(real_cluster, "adapterdeployments", ns, ADEP)
        states = {a.get("name"): a.get("state") for a in status.get("adapters") or []}
        return states.get("by-hand") == states.get(FTJ) == "Loaded"

    pods = wait_until(two_ready, f"two Ready pods of {ADEP}", 600, real_cluster)
    wait_until(both_loaded, f"by-hand and {FTJ} Loaded in {ADEP}", 600, real_cluster)
    answers = set()
    for pod in pods:
        assert pod.spec.node_name == real_cluster.real_node.name
        # Straight to this pod (not the Service), so each replica is checked.
        for name in (FTJ, "by-hand"):
            url = f"http://{pod.status.pod_ip}:8080"
            answers.add(generate(real_cluster, ns, client_pod, url, name))
    # Greedy decoding, the same weights: one answer from both replicas under both names.
    assert len(answers) == 1, answers
