"""FineTuneJob against the real control plane: Job, phases, failure, restart, deletion."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from cluster import KubeCluster
from optools import Objects, OperatorProcess, ftj_manifest, until, wait_gone

pytestmark = pytest.mark.integration


def only_job(objects: Objects, ns: str, name: str) -> Any:
    jobs = objects.jobs(ns, name)
    assert len(jobs) <= 1, [j.metadata.name for j in jobs]
    return jobs[0] if jobs else None


def test_job_runs_succeeds_and_each_transition_is_an_event(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("happy"))
    job = until(lambda: only_job(objects, namespace, "happy"), "the training Job")
    assert job.metadata.name == "happy-train"
    assert job.metadata.owner_references[0].kind == "FineTuneJob"
    template = job.spec.template.spec
    assert template.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert template.init_containers[0].restart_policy == "Always"
    status = objects.wait_phase("finetunejobs", namespace, "happy", "Running")
    assert status["jobName"] == "happy-train" and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Running"]["status"] == "True"
    objects.finish_training_pod(namespace, "happy")
    status = objects.wait_phase("finetunejobs", namespace, "happy", "Succeeded")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    assert status["completionTime"]
    reasons = until(
        lambda: (
            (r := {e.split(":")[0] for e in objects.events(namespace, "happy")})
            >= {"Running", "Succeeded"}
            and r
        ),
        "events for each transition",
    )
    assert {"Running", "Succeeded"} <= reasons


def test_failed_job_fails_the_finetunejob_with_the_pods_reason(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("sad", backoffLimit=0))
    objects.wait_phase("finetunejobs", namespace, "sad", "Running")
    objects.finish_training_pod(namespace, "sad", "Failed")
    status = objects.wait_phase("finetunejobs", namespace, "sad", "Failed")
    assert "BackoffLimitExceeded" in status["message"]
    assert "trainer exited with code 1 (Error)" in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert any(e.startswith("Failed:") for e in objects.events(namespace, "sad"))


def test_operator_restart_mid_flight_makes_no_second_job(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("steady"))
    first = until(lambda: only_job(objects, namespace, "steady"), "the training Job")
    running_operator.stop(signal.SIGKILL)  # no clean shutdown: as if the pod was lost
    objects.apply(namespace, ftj_manifest("while-down"))
    running_operator.start()
    objects.wait_phase("finetunejobs", namespace, "steady", "Running")
    objects.wait_phase("finetunejobs", namespace, "while-down", "Running")
    again = only_job(objects, namespace, "steady")
    assert again.metadata.uid == first.metadata.uid
    assert len(objects.jobs(namespace, "while-down")) == 1


def test_deleted_job_of_a_running_finetunejob_is_recreated(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("phoenix"))
    objects.wait_phase("finetunejobs", namespace, "phoenix", "Running")
    first = only_job(objects, namespace, "phoenix")
    objects.batch.delete_namespaced_job("phoenix-train", namespace, propagation_policy="Background")
    objects.core.delete_namespaced_config_map("phoenix-spec", namespace)
    new = until(
        lambda: (
            (j := only_job(objects, namespace, "phoenix"))
            and j.metadata.uid != first.metadata.uid
            and j
        ),
        "the Job to be recreated",
    )
    assert new.metadata.name == "phoenix-train"
    until(
        lambda: any(
            c.metadata.name == "phoenix-spec"
            for c in objects.core.list_namespaced_config_map(namespace).items
        ),
        "the spec ConfigMap to be recreated",
    )


def test_deleting_the_finetunejob_removes_its_children(
    running_operator: OperatorProcess, objects: Objects, namespace: str, kube_cluster: KubeCluster
) -> None:
    objects.apply(namespace, ftj_manifest("ephemeral"))
    until(lambda: only_job(objects, namespace, "ephemeral"), "the training Job")
    kube_cluster.kubectl("delete", "ftj", "ephemeral", "-n", namespace, "--wait=true")

    def all_gone() -> bool:
        out = kube_cluster.kubectl(
            "get",
            "job,configmap,serviceaccount,role,rolebinding",
            "-n",
            namespace,
            "-l",
            "loraland.dev/finetunejob=ephemeral",
            "-o",
            "name",
        ).stdout.strip()
        return out == ""

    wait_gone(all_gone, "the garbage collector to delete the children")


def test_training_fields_cannot_change_once_started_but_deploy_to_can(
    running_operator: OperatorProcess, objects: Objects, namespace: str, kube_cluster: KubeCluster
) -> None:
    objects.apply(namespace, ftj_manifest("fixed"))
    objects.wait_phase("finetunejobs", namespace, "fixed", "Running")
    refused = kube_cluster.kubectl(
        "patch",
        "ftj",
        "fixed",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"lora":{"rank":64}}}',
        check=False,
    )
    assert refused.returncode != 0
    assert "spec.lora cannot change once the FineTuneJob has started" in refused.stderr
    ok = kube_cluster.kubectl(
        "patch",
        "ftj",
        "fixed",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"deployTo":{"adapterDeployment":"somewhere"}}}',
    )
    assert ok.returncode == 0
    assert len(objects.jobs(namespace, "fixed")) == 1


def test_a_spec_refused_before_starting_can_be_fixed(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    objects.apply(namespace, ftj_manifest("typo", output={"uri": "hf://org/adapter"}))
    status = objects.wait_phase("finetunejobs", namespace, "typo", "Failed")
    assert "spec.output.uri" in status["message"]
    assert not objects.jobs(namespace, "typo")
    objects.apply(namespace, ftj_manifest("typo"))
    objects.wait_phase("finetunejobs", namespace, "typo", "Running")


def test_deploy_to_min_gain_deploys_only_an_adapter_that_beats_its_base(
    running_operator: OperatorProcess, objects: Objects, namespace: str
) -> None:
    from optools import GROUP, VERSION, adep_manifest

    objects.apply(namespace, adep_manifest("serving"))
    deploy = {"adapterDeployment": "serving", "minGain": 0.2}
    for name, (base, adapter) in {"meh": (0.5, 0.6), "great": (0.5, 0.8)}.items():
        objects.apply(namespace, ftj_manifest(name, deployTo=deploy))
        objects.wait_phase("finetunejobs", namespace, name, "Running")
        # What the relay writes once the trainer has scored the adapter.
        objects.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "finetunejobs",
            name,
            {
                "status": {
                    "adapter": {
                        "name": name,
                        "uri": f"s3://loraland-test/{name}",
                        "sha256": "a" * 64,
                        "sizeBytes": 1,
                    },
                    "scores": {
                        "metric": "accuracy",
                        "base": base,
                        "adapter": adapter,
                        "samples": 9,
                    },
                }
            },
        )
        objects.finish_training_pod(namespace, name)
        objects.wait_phase("finetunejobs", namespace, name, "Succeeded")

    def deployed(name: str) -> dict[str, Any] | None:
        conditions = objects.status("finetunejobs", namespace, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Deployed"), None)

    refused = until(lambda: deployed("meh"), "meh's Deployed condition")
    assert refused["status"] == "False" and refused["reason"] == "BelowMinGain"
    assert "a gain of +0.100 < deployTo.minGain 0.200" in refused["message"]
    accepted = until(lambda: deployed("great"), "great's Deployed condition")
    assert accepted["status"] == "True"
    adep = objects.get("adapterdeployments", namespace, "serving") or {}
    assert adep["spec"]["adapters"] == [{"name": "great", "uri": "s3://loraland-test/great"}]
    assert "deployedTo" not in objects.status("finetunejobs", namespace, "meh")
    assert any(e.startswith("NotDeployed:") for e in objects.events(namespace, "meh"))
