"""FineTuneStudy against the real control plane: fan-out, parallelism, scores, winners,
restart, retries, deletion.

kwok pods run nothing, so the test plays the training pods' two containers as the other
operator tests do: it writes ``status.adapter`` and ``status.scores`` to each FineTuneJob
as the progress relay would (the status subresource), then ends the pod with the
``loraland.dev/kwok-result`` annotation.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from cluster import KubeCluster, wait_for
from optools import GROUP, VERSION, Objects, OperatorProcess, until, wait_gone

pytestmark = pytest.mark.integration

STUDY_API = f"{GROUP}/{VERSION}"
TERMINAL = ("Succeeded", "Failed")


def study_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "baseModels": [
            {"name": "b1", "uri": "hf://org/b1-7b", "labels": {"size": "7b", "instruct": "false"}},
            {
                "name": "b2",
                "uri": "hf://org/b2-7b-it",
                "labels": {"size": "7b", "instruct": "true"},
            },
            {"name": "b3", "uri": "hf://org/b3-2b", "labels": {"size": "2b", "instruct": "false"}},
        ],
        "tasks": [
            {"name": "t1", "task": "sentiment"},
            {"name": "t2", "task": "intents"},
            {"name": "t3", "task": "arithmetic"},
            {"name": "t4", "task": "rating"},
        ],
        "template": {
            "training": {"maxSteps": 3},
            "output": {"uri": f"s3://loraland-test/{name}"},
            "resources": {"gpus": 1},
            "backoffLimit": 0,
        },
        "maxParallel": 3,
    }
    base.update(spec)
    return {
        "apiVersion": STUDY_API,
        "kind": "FineTuneStudy",
        "metadata": {"name": name},
        "spec": base,
    }


def study_jobs(objects: Objects, ns: str, study: str) -> list[dict[str, Any]]:
    found = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, ns, "finetunejobs", label_selector=f"loraland.dev/study={study}"
    )
    return list(found["items"])


def phase_of(job: dict[str, Any]) -> str:
    return str((job.get("status") or {}).get("phase") or "Pending")


def report_as_relay(objects: Objects, ns: str, name: str, base: float, adapter: float) -> None:
    """What the relay writes once the trainer has scored the adapter."""
    status = {
        "adapter": {
            "name": name,
            "uri": f"s3://loraland-test/{name}",
            "sha256": "a" * 64,
            "sizeBytes": 1,
        },
        "scores": {"metric": "accuracy", "base": base, "adapter": adapter, "samples": 50},
    }
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "finetunejobs", name, {"status": status}
    )


def end_pod(objects: Objects, ns: str, name: str, result: str) -> bool:
    pods = [
        p
        for p in objects.pods(ns, f"loraland.dev/finetunejob={name}")
        if p.status.phase == "Running"
    ]
    for pod in pods:
        objects.core.patch_namespaced_pod(
            pod.metadata.name,
            ns,
            {"metadata": {"annotations": {"loraland.dev/kwok-result": result}}},
        )
    return bool(pods)


#: (base, task) -> (base score, adapter score). b1 is best on average; on t3 its adapter
#: gains only 0.05, below minGain 0.1, so t3 is not deployed.
SCORES = {
    ("b1", "t1"): (0.50, 0.90),
    ("b1", "t2"): (0.40, 0.80),
    ("b1", "t3"): (0.60, 0.65),
    ("b1", "t4"): (0.50, 0.75),
    ("b2", "t1"): (0.60, 0.70),
    ("b2", "t2"): (0.50, 0.60),
    ("b2", "t3"): (0.30, 0.50),
    ("b2", "t4"): (0.40, 0.50),
    ("b3", "t1"): (0.20, 0.60),
    ("b3", "t2"): (0.20, 0.50),
    ("b3", "t3"): (0.10, 0.30),
    ("b3", "t4"): (0.30, 0.40),
}


def test_study_fans_out_within_max_parallel_scores_deploys_and_survives_a_restart(
    running_operator: OperatorProcess, objects: Objects, kube_cluster: KubeCluster, namespace: str
) -> None:
    objects.apply(
        namespace,
        study_manifest(
            "lab",
            references=[{"name": "gpt-4", "source": "test", "scores": {"t3": 0.95, "t1": 0.5}}],
            deploy={
                "adapterDeployment": "winners",
                "baseModel": "best",
                "minGain": 0.1,
                "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"},
            },
        ),
    )
    max_active = 0
    finished: set[str] = set()
    uids: dict[str, str] = {}
    restarted = False

    def step() -> bool:
        nonlocal max_active, restarted
        jobs = study_jobs(objects, namespace, "lab")
        for job in jobs:
            name, uid = job["metadata"]["name"], job["metadata"]["uid"]
            assert uids.setdefault(name, uid) == uid, f"{name} was made twice"
        active = [j for j in jobs if phase_of(j) not in TERMINAL]
        max_active = max(max_active, len(active))
        assert len(active) <= 3, [j["metadata"]["name"] for j in active]
        if len(finished) >= 4 and not restarted:
            running_operator.stop(signal.SIGKILL)  # as if the operator's pod was lost
            running_operator.start()
            restarted = True
        for job in active:
            name = job["metadata"]["name"]
            if phase_of(job) != "Running" or name in finished:
                continue
            labels = job["metadata"]["labels"]
            base, task = labels["loraland.dev/study-base"], labels["loraland.dev/study-task"]
            report_as_relay(objects, namespace, name, *SCORES[(base, task)])
            if end_pod(objects, namespace, name, "Succeeded"):
                finished.add(name)
        return len(jobs) == 12 and all(phase_of(j) == "Succeeded" for j in jobs)

    wait_for(step, timeout=420, interval=1.0, what="all 12 runs of the study to succeed")
    assert restarted and max_active == 3
    assert len(uids) == 12
    for name in uids:
        assert len(objects.jobs(namespace, name)) == 1, f"{name} has more than one Job"

    status = until(
        lambda: (
            (s := objects.status("finetunestudies", namespace, "lab")).get("phase") == "Completed"
            and s.get("deployedTo")
            and s
        ),
        "the study to complete and deploy",
    )
    assert status["progress"] == "12/12" and status["total"] == 12
    assert status["counts"]["succeeded"] == 12 and status["counts"]["failed"] == 0
    assert status["bestBase"] == "b1"
    bases = {b["name"]: b for b in status["bases"]}
    assert bases["b1"]["meanScore"] == pytest.approx(0.775)
    assert bases["b1"]["meanGain"] == pytest.approx(0.275)
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["t1"]["bestRun"] == "lab-b1-t1" and tasks["t1"]["bestScore"] == 0.9
    assert tasks["t3"]["bestReference"] == "gpt-4" and tasks["t3"]["referenceScore"] == 0.95
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["Deployed"]["status"] == "True"
    assert "t3: lab-b1-t3 gains +0.050 < minGain 0.100" in conditions["Deployed"]["message"]

    # Only the winners above minGain, on the best base, served under their task names.
    adep = objects.get("adapterdeployments", namespace, "winners")
    assert adep is not None
    assert adep["metadata"]["ownerReferences"][0]["kind"] == "FineTuneStudy"
    assert adep["spec"]["baseModel"]["uri"] == "hf://org/b1-7b"
    assert adep["spec"]["adapters"] == [
        {"name": "t1", "fromFineTuneJob": "lab-b1-t1"},
        {"name": "t2", "fromFineTuneJob": "lab-b1-t2"},
        {"name": "t4", "fromFineTuneJob": "lab-b1-t4"},
    ]
    assert status["deployedAdapters"] == ["t1", "t2", "t4"]

    # The full table and its markdown in the ConfigMap.
    cm = objects.core.read_namespaced_config_map("lab-results", namespace)
    table = json.loads(cm.data["results.json"])
    assert len(table["runs"]) == 12 and table["references"][0]["name"] == "gpt-4"
    row = next(r for r in table["runs"] if r["name"] == "lab-b2-t3")
    assert (row["baseScore"], row["adapterScore"], row["phase"]) == (0.3, 0.5, "Succeeded")
    assert (
        "| lab-b3-t4 | b3 | t4 | Succeeded | accuracy | 30.0 | 40.0 | +10.0 | 1 |"
        in cm.data["results.md"]
    )

    table_out = kube_cluster.kubectl("get", "fts", "-n", namespace).stdout
    assert "Completed" in table_out and "12/12" in table_out and "b1" in table_out, table_out
    reasons = {e.split(":")[0] for e in objects.events(namespace, "lab")}
    assert {"Running", "Completed", "Deployed"} <= reasons, reasons


def test_failed_run_is_retried_then_marked_while_the_rest_continue(
    running_operator: OperatorProcess, objects: Objects, kube_cluster: KubeCluster, namespace: str
) -> None:
    objects.apply(
        namespace,
        study_manifest(
            "flaky",
            baseModels=[{"name": "b1", "uri": "hf://org/b1"}],
            maxParallel=1,
            retries=1,
        ),
    )
    first = "flaky-b1-t1"
    # Attempt 1 fails; the run is started again under the same name.
    until(
        lambda: phase_of(objects.get("finetunejobs", namespace, first) or {}) == "Running", "run 1"
    )
    old_uid = (objects.get("finetunejobs", namespace, first) or {})["metadata"]["uid"]
    until(lambda: end_pod(objects, namespace, first, "Failed"), "attempt 1's pod to end")

    def second_attempt() -> dict[str, Any] | None:
        job = objects.get("finetunejobs", namespace, first)
        if job and job["metadata"]["uid"] != old_uid and phase_of(job) == "Running":
            return job
        return None

    again = until(second_attempt, "attempt 2 of run 1", timeout=120)
    assert again["metadata"]["annotations"]["loraland.dev/attempt"] == "2"
    # Only one run at a time so far.
    assert sum(phase_of(j) not in TERMINAL for j in study_jobs(objects, namespace, "flaky")) == 1
    until(lambda: end_pod(objects, namespace, first, "Failed"), "attempt 2's pod to end")
    status = until(
        lambda: (
            (s := objects.status("finetunestudies", namespace, "flaky")).get("failedRuns") and s
        ),
        "the run to be marked failed",
    )
    assert status["failedRuns"] == [first]
    assert status["retries"] == 1 and status["attempts"] == {first: 2}

    # maxParallel edits take effect: two runs at once from now on.
    kube_cluster.kubectl(
        "patch", "fts", "flaky", "-n", namespace, "--type=merge", "-p", '{"spec":{"maxParallel":2}}'
    )
    until(
        lambda: sum(phase_of(j) == "Running" for j in study_jobs(objects, namespace, "flaky")) == 2,
        "two runs at once after raising maxParallel",
    )

    def finish_the_rest() -> bool:
        jobs = study_jobs(objects, namespace, "flaky")
        for job in jobs:
            if phase_of(job) == "Running":
                end_pod(objects, namespace, job["metadata"]["name"], "Succeeded")
        return len(jobs) == 4 and all(phase_of(j) in TERMINAL for j in jobs)

    wait_for(finish_the_rest, timeout=240, interval=1.0, what="the other runs to finish")
    status = objects.wait_phase("finetunestudies", namespace, "flaky", "Completed")
    assert status["counts"]["succeeded"] == 3 and status["counts"]["failed"] == 1
    assert status["message"] == "3 of 4 runs succeeded, 1 failed"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["RunsFailed"]["status"] == "True"
        and first in conditions["RunsFailed"]["message"]
    )
    events = objects.events(namespace, "flaky")
    assert any(e.startswith("RunRetried:") for e in events)
    assert any(e.startswith("RunFailed:") and first in e for e in events)


def test_deleting_the_study_deletes_its_jobs_and_results(
    running_operator: OperatorProcess, objects: Objects, kube_cluster: KubeCluster, namespace: str
) -> None:
    objects.apply(
        namespace,
        study_manifest("brief", baseModels=[{"name": "b1", "uri": "hf://org/b1"}], maxParallel=2),
    )
    until(lambda: len(study_jobs(objects, namespace, "brief")) == 2, "two runs to start")
    until(lambda: objects.jobs(namespace, "brief-b1-t1"), "the first run's Job")
    kube_cluster.kubectl("delete", "fts", "brief", "-n", namespace, "--wait=true")

    def all_gone() -> bool:
        out = kube_cluster.kubectl(
            "get",
            "ftj,job,configmap",
            "-n",
            namespace,
            "-l",
            "loraland.dev/study=brief",
            "-o",
            "name",
        ).stdout.strip()
        jobs = kube_cluster.kubectl(
            "get", "job", "-n", namespace, "-l", "loraland.dev/finetunejob", "-o", "name"
        ).stdout.strip()
        return out == "" and jobs == ""

    wait_gone(all_gone, "the garbage collector to delete the study's runs and their Jobs")


def test_invalid_study_is_refused_naming_the_field(
    running_operator: OperatorProcess, objects: Objects, kube_cluster: KubeCluster, namespace: str
) -> None:
    refused = kube_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            study_manifest("dup", tasks=[{"name": "t1", "task": "a"}, {"name": "t1", "task": "b"}])
        ),
        check=False,
    )
    assert refused.returncode != 0 and "spec.tasks[1]" in refused.stderr, refused.stderr
    objects.apply(
        namespace, study_manifest("wrong", deploy={"adapterDeployment": "w", "baseModel": "nobody"})
    )
    status = objects.wait_phase("finetunestudies", namespace, "wrong", "Failed")
    assert "spec.deploy.baseModel" in status["message"]
    spec_valid = {c["type"]: c for c in status["conditions"]}["SpecValid"]
    assert spec_valid["status"] == "False" and spec_valid["reason"] == "InvalidSpec"
    assert not study_jobs(objects, namespace, "wrong")
    # Fixed: the study starts.
    objects.apply(
        namespace, study_manifest("wrong", deploy={"adapterDeployment": "w", "baseModel": "b2"})
    )
    objects.wait_phase("finetunestudies", namespace, "wrong", "Running")
