"""Operator throughput on a kwok control plane: 200 FineTuneJobs at once.

Starts a fresh kwok cluster (make cluster-bin binaries) with enough fake CPU nodes for
every training pod, installs crds/, runs ``loraland operator run`` as a subprocess, and
creates N FineTuneJobs from a thread pool. Watches record when each job's Job appears and
when its phase becomes Running. Prints p50/p95 of both and the operator's peak RSS.

    LORALAND_CACHE=... .venv/bin/python benchmarks/operator/run.py [--jobs 200]

Figures depend on the machine (other processes share the cores); they are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from cluster import DEFAULT_NODES, FakeNode, KwokCluster, unique_name  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

GROUP, VERSION = "loraland.dev", "v1alpha1"


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "builtin://smollm2-135m-instruct"},
            "dataset": {"task": "sentiment"},
            "training": {"maxSteps": 10},
            "output": {"uri": f"s3://bench/{name}"},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "128Mi"},
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    n = args.jobs
    nodes = (
        *DEFAULT_NODES,
        *(FakeNode(f"kwok-bench-{i}", pods=250) for i in range((n // 200) + 1)),
    )
    cluster = KwokCluster.from_env(unique_name("loraland-bench"))
    cluster.create(nodes, timeout=300)
    operator: subprocess.Popen[bytes] | None = None
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds")
        )
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
        ns = "bench"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        log = (cluster.cluster_dir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "loraland"),
                "operator",
                "run",
                "-A",
                "--kubeconfig",
                str(cluster.kubeconfig),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(5)  # let it list and watch before the burst

        created: dict[str, float] = {}
        job_seen: dict[str, float] = {}
        running_seen: dict[str, float] = {}
        stop = threading.Event()

        def watch_jobs() -> None:
            w = watch.Watch()
            for event in w.stream(batch.list_namespaced_job, ns, timeout_seconds=int(args.timeout)):
                owner = event["object"].metadata.labels.get("loraland.dev/finetunejob")
                if owner:
                    job_seen.setdefault(owner, time.monotonic())
                if stop.is_set():
                    return

        def watch_ftjs() -> None:
            w = watch.Watch()
            stream = w.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                "finetunejobs",
                timeout_seconds=int(args.timeout),
            )
            for event in stream:
                obj = event["object"]
                if (obj.get("status") or {}).get("phase") == "Running":
                    running_seen.setdefault(obj["metadata"]["name"], time.monotonic())
                if stop.is_set():
                    return

        def quietly(target: Any) -> Any:
            def run() -> None:
                try:
                    target()
                except Exception:  # the cluster goes away under the watch at exit
                    if not stop.is_set():
                        raise

            return run

        for target in (watch_jobs, watch_ftjs):
            threading.Thread(target=quietly(target), daemon=True).start()
        time.sleep(1)

        def create(i: int) -> None:
            name = f"bench-{i:04d}"
            start = time.monotonic()
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "finetunejobs", manifest(name)
            )
            created[name] = start

        burst = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(n)))
        create_s = time.monotonic() - burst
        deadline = time.monotonic() + args.timeout
        while len(running_seen) < n and time.monotonic() < deadline:
            time.sleep(1)
        stop.set()
        to_job = [job_seen[k] - created[k] for k in created if k in job_seen]
        to_running = [running_seen[k] - created[k] for k in created if k in running_seen]
        figures = {
            "finetunejobs": n,
            "create_burst_s": round(create_s, 2),
            "jobs_present": len(to_job),
            "to_job_p50_s": round(statistics.median(to_job), 2) if to_job else None,
            "to_job_p95_s": round(percentile(to_job, 0.95), 2) if to_job else None,
            "running": len(to_running),
            "to_running_p50_s": round(statistics.median(to_running), 2) if to_running else None,
            "to_running_p95_s": round(percentile(to_running, 0.95), 2) if to_running else None,
            "all_running_after_s": round(max(to_running), 2) if to_running else None,
            "operator_peak_rss_mib": round(peak_rss_mib(operator.pid), 1),
        }
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
        print(json.dumps(figures))
        return 0
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        cluster.delete()


if __name__ == "__main__":
    sys.exit(main())
