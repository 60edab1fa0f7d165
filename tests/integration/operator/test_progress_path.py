"""The progress path for real: a real ``loraland finetune`` run, the real relay holding a
token of the job's own ServiceAccount, the API server enforcing its Role, and
``kubectl get ftj`` showing the columns; then deployTo adds the adapter to serving.

kwok pods run nothing, so the test does what the pod's two containers would: it runs
the trainer with the pod's job file (read from the ConfigMap the operator made) and the
relay with a TokenRequest token for the pod's ServiceAccount.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from cluster import KubeCluster
from optools import (
    LORALAND,
    Objects,
    OperatorProcess,
    adep_manifest,
    ftj_manifest,
    kubeconfig_for_token,
    service_account_token,
    until,
)

pytestmark = pytest.mark.integration

PROGRESS_ROW = re.compile(r"^tiny\s+\S+\s+(Running|Evaluating)\s+(\d+)/3\s+(\d+\.\d+)", re.M)


def test_trainer_progress_reaches_kubectl_and_the_adapter_reaches_serving(
    running_operator: OperatorProcess,
    objects: Objects,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "adapter"
    objects.apply(namespace, adep_manifest("serving"))
    objects.apply(
        namespace,
        ftj_manifest(
            "tiny",
            dataset={"task": "sentiment", "maxSamples": 40},
            training={"maxSteps": 3, "batchSize": 2, "maxSeqLength": 64, "checkpointEverySteps": 0},
            evaluation={"maxSamples": 4, "batchSize": 4, "compareBase": True, "maxNewTokens": 4},
            output={"uri": str(out_dir)},
            resources={"gpus": 0},
            deployTo={"adapterDeployment": "serving"},
        ),
    )
    objects.apply(namespace, ftj_manifest("neighbour"))
    objects.wait_phase("finetunejobs", namespace, "tiny", "Running")

    # What the pod would get: the operator's job file, and a token of its ServiceAccount.
    job_file = tmp_path / "finetunejob.yaml"
    job_file.write_text(
        objects.core.read_namespaced_config_map("tiny-spec", namespace).data["finetunejob.yaml"]
    )
    assert yaml.safe_load(job_file.read_text())["metadata"]["name"] == "tiny"
    token = service_account_token(kube_cluster, "tiny-progress", namespace)
    relay_config = kubeconfig_for_token(
        kube_cluster, token, tmp_path / "relay.kubeconfig", namespace
    )

    # The Role allows patching this job's status, and nothing else.
    as_relay = ["--kubeconfig", str(relay_config), "-n", namespace]
    for args in (
        [
            "patch",
            "ftj",
            "neighbour",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Succeeded"}}',
        ],
        ["patch", "ftj", "tiny", "--type=merge", "-p", '{"spec":{"deployTo":null}}'],
        ["get", "ftj"],
        ["get", "secrets"],
    ):
        denied = kube_cluster.kubectl(*args, *as_relay, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), (
            args,
            denied.stderr,
        )

    progress, result = tmp_path / "progress.jsonl", tmp_path / "result.json"
    relay = subprocess.Popen(
        [
            LORALAND,
            "operator",
            "relay-progress",
            "--ftj",
            "tiny",
            "--namespace",
            namespace,
            "--file",
            str(progress),
            "--result",
            str(result),
            "--adapter-name",
            "tiny",
            "--kubeconfig",
            str(relay_config),
            "--interval",
            "0.5",
            "--termination-log",
            str(tmp_path / "termination-log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    trainer = subprocess.Popen(
        [
            LORALAND,
            "finetune",
            "-f",
            str(job_file),
            "--progress-file",
            str(progress),
            "--result-file",
            str(result),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "trainer.log").open("wb"),
    )
    rows: list[re.Match[str]] = []
    phases: set[str] = set()
    try:
        while trainer.poll() is None:
            table = kube_cluster.kubectl("get", "ftj", "tiny", "-n", namespace).stdout
            if match := PROGRESS_ROW.search(table):
                rows.append(match)
            phases.add(objects.status("finetunejobs", namespace, "tiny").get("phase", ""))
            with contextlib.suppress(subprocess.TimeoutExpired):
                trainer.wait(1.0)
        assert trainer.returncode == 0, (tmp_path / "trainer.log").read_text()[-2000:]
        until(
            lambda: objects.status("finetunejobs", namespace, "tiny").get("adapter"),
            "the relay to post the result",
            timeout=30,
        )
    finally:
        if trainer.poll() is None:
            trainer.kill()
        relay.send_signal(signal.SIGTERM)  # as the kubelet does once the trainer exited
        relay_out = relay.communicate(timeout=30)[0].decode()
    assert relay.returncode == 0, relay_out
    assert rows, "kubectl get ftj never showed Progress and Loss"
    assert {int(m.group(2)) for m in rows} <= {0, 1, 2, 3}
    assert all(float(m.group(3)) > 0 for m in rows)
    assert "Evaluating" in phases or any(m.group(1) == "Evaluating" for m in rows)

    # The trainer is done: the pod ends, the Job completes, the operator finishes the job.
    objects.finish_training_pod(namespace, "tiny")
    status = objects.wait_phase("finetunejobs", namespace, "tiny", "Succeeded")
    written = json.loads(result.read_text().strip().splitlines()[-1])
    assert status["adapter"] == {
        "name": "tiny",
        "uri": written["adapterUri"],
        "sha256": written["sha256"],
        "sizeBytes": written["sizeBytes"],
    }
    assert status["scores"]["metric"] == "accuracy" and status["scores"]["samples"] == 4
    assert status["progress"]["summary"] == "3/3"
    table = kube_cluster.kubectl("get", "ftj", "tiny", "-n", namespace).stdout
    assert re.search(r"tiny\s+builtin://smollm2-135m-instruct\s+Succeeded\s+3/3\s+\d", table), table
    assert (out_dir / "adapter_model.safetensors").is_file()

    # deployTo: the adapter is now served by "serving", with no hand edits.
    status = until(
        lambda: (
            (s := objects.status("finetunejobs", namespace, "tiny")).get("deployedTo") == "serving"
            and s
        ),
        "deployTo to add the adapter",
    )
    assert {c["type"]: c["status"] for c in status["conditions"]}["Deployed"] == "True"
    adep = objects.get("adapterdeployments", namespace, "serving")
    assert adep is not None
    assert adep["spec"]["adapters"] == [{"name": "tiny", "uri": written["adapterUri"]}]
    until(
        lambda: (
            "name: tiny"
            in objects.core.read_namespaced_config_map("serving-adapters", namespace).data[
                "adapters.yaml"
            ]
        ),
        "the serving pods' adapter list to include tiny",
    )
    assert any(e.startswith("Deployed:") for e in objects.events(namespace, "tiny"))


def test_operator_never_needed_a_right_it_was_not_given(running_operator: OperatorProcess) -> None:
    """The session operator runs with exactly loraland.controller.rbac's rules (last test)."""
    logs = "".join(p.read_text(errors="replace") for p in running_operator.log_dir.glob("*.log"))
    assert logs, "no operator log"
    # (Namespaces the tests delete refuse new events with a 403 too; that is not RBAC.)
    denied = re.findall(r'forbidden: User "[^"]+" cannot [^\n]{0,200}', logs)
    assert not denied, denied[:3]
