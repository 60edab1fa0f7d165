"""A real Kubernetes control plane for tests: kwok's binary runtime on locally built binaries.

`make cluster-bin` (hack/build.sh) builds kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl, etcd, kwok, kwokctl and helm from Go modules into
``$LORALAND_CACHE/bin/<sha256(hack/go.sum)[:12]>/``. This module turns them into a cluster:

* ``kwokctl create cluster --runtime binary`` runs etcd, the API server, the controller
  manager, the scheduler and the kwok controller as local processes. Every binary path is
  given explicitly, so kwokctl never downloads anything.
* Fake nodes are plain Node objects (:func:`node_manifest`); the kwok controller plays
  their kubelet using the Stages in ``hack/kwok/stages.yaml``. Pods go Running once
  scheduled and finish only when the annotation :data:`RESULT_ANNOTATION` says so.
* GPU nodes advertise ``nvidia.com/gpu: 8`` and carry the taint :data:`GPU_TAINT`, as GPU
  node pools do on GKE and EKS: a GPU workload must tolerate it (:data:`GPU_TOLERATION`)
  and anything else lands on the untainted CPU node. No admission plugin adds the
  toleration for you.

Only the standard library is used so that ``make cluster-up`` runs with any python3;
the Kubernetes client is created by the pytest fixture (tests/integration/conftest.py).
Run ``python3 tests/integration/cluster.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK_DIR = REPO_ROOT / "hack"
GO_SUM = HACK_DIR / "go.sum"
STAGES_FILE = HACK_DIR / "kwok" / "stages.yaml"

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
    "helm",
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT: dict[str, str] = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
POOL_LABEL = "loraland.dev/pool"
# Set to "Succeeded" or "Failed" on a pod (or its template) to end it; see stages.yaml.
RESULT_ANNOTATION = "loraland.dev/kwok-result"

TEST_CLUSTER_PREFIX = "loraland-test"
DEV_CLUSTER_NAME = "loraland-dev"


class ClusterError(RuntimeError):
    """The test control plane is missing or did not behave."""


# --------------------------------------------------------------------------- binaries


def cache_dir(env: Mapping[str, str]) -> Path:
    """``$LORALAND_CACHE``, defaulting like the Makefile does."""
    return Path(env.get("LORALAND_CACHE") or Path.home() / ".cache" / "loraland").absolute()


def go_sum_hash(go_sum: Path = GO_SUM) -> str:
    """The first 12 hex digits of sha256(hack/go.sum): the binary cache key."""
    return hashlib.sha256(go_sum.read_bytes()).hexdigest()[:12]


def bin_dir(env: Mapping[str, str]) -> Path:
    """Where the binaries live: ``$LORALAND_CLUSTER_BIN`` or the go.sum-keyed cache dir."""
    override = env.get("LORALAND_CLUSTER_BIN")
    if override:
        return Path(override).absolute()
    return cache_dir(env) / "bin" / go_sum_hash()


def find_binaries(directory: Path) -> dict[str, Path]:
    """Map each required binary to its path, or explain how to build the missing ones."""
    paths = {name: directory / name for name in BINARIES}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ClusterError(
            f"test control plane binaries missing from {directory}: {', '.join(missing)}. "
            "Run `make cluster-bin` (or point LORALAND_CLUSTER_BIN at a directory holding "
            f"{', '.join(BINARIES)})."
        )
    return paths


# ------------------------------------------------------------------------ pure builders


@dataclasses.dataclass(frozen=True)
class FakeNode:
    """What a fake node advertises. ``gpus`` > 0 makes it a tainted GPU node."""

    name: str
    cpu: str = "32"
    memory: str = "128Gi"
    gpus: int = 0
    pods: int = 110
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"

    @property
    def pool(self) -> str:
        return "gpu" if self.gpus else "cpu"


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode("kwok-gpu-0", cpu="192", memory="2Ti", gpus=8),
    FakeNode("kwok-gpu-1", cpu="192", memory="2Ti", gpus=8),
    FakeNode("kwok-cpu-0"),
)


def node_manifest(node: FakeNode, index: int, kubelet_version: str) -> dict[str, Any]:
    """A Node object with the status a kubelet would register (kwok adds conditions)."""
    machine_id = hashlib.sha256(node.name.encode()).hexdigest()[:32]
    resources: dict[str, str] = {
        "cpu": node.cpu,
        "memory": node.memory,
        "pods": str(node.pods),
        "ephemeral-storage": "1Ti",
    }
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: node.pool,
    }
    spec: dict[str, Any] = {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]}
    if node.gpus:
        resources[GPU_RESOURCE] = str(node.gpus)
        # The labels NVIDIA's GPU feature discovery puts on real GPU nodes.
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(node.gpus),
            "nvidia.com/gpu.product": node.gpu_product,
        }
        spec["taints"] = [dict(GPU_TAINT)]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {
                KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": f"10.89.0.{index + 10}"},
                {"type": "Hostname", "address": node.name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "kwok fake node",
                "kernelVersion": "kwok",
                "containerRuntimeVersion": "kwok://fake",
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": "",
                "machineID": machine_id,
                "systemUUID": machine_id,
                "bootID": machine_id,
            },
        },
    }


# Every port a binary-runtime cluster listens on (kwokctl option names).
PORT_OPTIONS = (
    "etcdPort",
    "etcdPeerPort",
    "kubeApiserverPort",
    "kubeControllerManagerPort",
    "kubeSchedulerPort",
    "kwokControllerPort",
)
# Below Linux's ephemeral range (32768+) and below the range kwokctl itself counts down
# from (32767), so neither outgoing connections nor a plain kwokctl take them.
PORT_RANGE = range(20000, 30000)


def pick_ports(
    count: int,
    used: Iterable[int],
    is_free: Callable[[int], bool],
    rng: random.Random,
    candidates: Sequence[int] = PORT_RANGE,
) -> list[int]:
    """``count`` distinct random ports, none in ``used``, each passing ``is_free``."""
    taken = set(used)
    picked: list[int] = []
    for port in rng.sample(list(candidates), len(candidates)):
        if port not in taken and is_free(port):
            picked.append(port)
            taken.add(port)
            if len(picked) == count:
                return picked
    raise ClusterError(f"fewer than {count} free ports in {candidates}")


def port_is_free(port: int) -> bool:
    for host in ("127.0.0.1", ""):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def ports_in_configs(clusters_dir: Path) -> set[int]:
    """Ports recorded by the other clusters in a kwok workdir (running or not)."""
    ports: set[int] = set()
    for config in clusters_dir.glob("*/kwok.yaml"):
        with contextlib.suppress(OSError):
            ports |= {int(p) for p in re.findall(r"[pP]ort: (\d+)", config.read_text())}
    return ports


def kwokctl_configuration(
    binaries: Mapping[str, Path],
    kube_version: str,
    ports: Mapping[str, int],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """kwokctl options: binary runtime, every component from ``binaries``, no downloads.

    ``extra`` adds top-level fields (e.g. ``componentsPatches``) and options (the rest).
    """
    extra = dict(extra or {})
    patches = extra.pop("componentsPatches", None)
    config: dict[str, Any] = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": kube_version,
            "etcdBinary": str(binaries["etcd"]),
            "kubeApiserverBinary": str(binaries["kube-apiserver"]),
            "kubeControllerManagerBinary": str(binaries["kube-controller-manager"]),
            "kubeSchedulerBinary": str(binaries["kube-scheduler"]),
            "kubectlBinary": str(binaries["kubectl"]),
            "kwokControllerBinary": str(binaries["kwok"]),
            "quietPull": True,
            **ports,
            **extra,
        },
    }
    config["componentsPatches"] = [KWOK_CONTROLLER_PATCH, *(patches or [])]
    return config


# kwok plays the kubelet only for nodes carrying this annotation (node_manifest sets it),
# never for a real node registered by its own kubelet. kwokctl's binary runtime passes
# --manage-all-nodes=true itself, so the later flags override it (a KwokConfiguration
# document would conflict with that flag instead).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
KWOK_CONTROLLER_PATCH: dict[str, Any] = {
    "name": "kwok-controller",
    "extraArgs": [
        {"key": "manage-all-nodes", "value": "false"},
        {
            "key": "manage-nodes-with-annotation-selector",
            "value": "=".join(KWOK_NODE_ANNOTATION),
        },
    ],
}


def render_config(configuration: Mapping[str, Any], stages_yaml: str) -> str:
    """One multi-document YAML file: the options (JSON is YAML) followed by the Stages."""
    return json.dumps(configuration, indent=2) + "\n---\n" + stages_yaml


def parse_version(output: str) -> str:
    """``Kubernetes v1.36.3`` -> ``v1.36.3``."""
    match = re.search(r"v\d+\.\d+\.\d+\S*", output)
    if not match:
        raise ClusterError(f"no version in {output!r}")
    return match.group(0)


def unique_name(prefix: str = TEST_CLUSTER_PREFIX) -> str:
    """A cluster name no other run uses: prefix, our pid (for reaping), random suffix."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


def owner_pid(name: str, prefix: str = TEST_CLUSTER_PREFIX) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"-(\d+)-[0-9a-f]+", name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(check: Callable[[], bool], *, timeout: float, interval: float, what: str) -> None:
    """Poll ``check`` every ``interval`` seconds until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------- cluster


@dataclasses.dataclass
class KwokCluster:
    """One kwokctl cluster in ``workdir`` (KWOK_WORKDIR, shared by every cluster).

    Clusters coexist: each has a unique name, and its ports are picked at random, away
    from those recorded by the other clusters in the workdir, under a file lock held
    until the new cluster has bound them.
    """

    name: str
    binaries: Mapping[str, Path]
    workdir: Path

    @classmethod
    def from_env(cls, name: str, env: Mapping[str, str] | None = None) -> KwokCluster:
        env = os.environ if env is None else env
        binaries = find_binaries(bin_dir(env))
        return cls(name=name, binaries=binaries, workdir=cache_dir(env) / "kwok")

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def helm_home(self) -> Path:
        return self.workdir / "helm" / self.name

    def exists(self) -> bool:
        return (self.cluster_dir / "kwok.yaml").exists()

    # -- processes

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.workdir)
        env["KUBECONFIG"] = str(self.kubeconfig)
        # Keep helm's state with the cluster, away from the user's home.
        for kind in ("cache", "config", "data"):
            env[f"HELM_{kind.upper()}_HOME"] = str(self.helm_home / kind)
        env["PATH"] = os.pathsep.join([str(self.binaries["kubectl"].parent), env.get("PATH", "")])
        return env

    def _run(
        self,
        binary: str,
        args: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binaries[binary]), *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self._env()
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def kwokctl(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._run("kwokctl", ["--name", self.name, *args], check=check, timeout=timeout)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster."""
        return self._run(
            "kubectl",
            ["--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            check=check,
            timeout=timeout,
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the built helm against this cluster."""
        return self._run(
            "helm", ["--kubeconfig", str(self.kubeconfig), *args], check=check, timeout=timeout
        )

    def kube_version(self) -> str:
        out = self._run("kube-apiserver", ["--version"], timeout=30).stdout
        return parse_version(out)

    # -- lifecycle

    @contextlib.contextmanager
    def _creation_lock(self, *, timeout: float) -> Iterator[None]:
        """Serialise cluster start-up in this workdir: between choosing its ports and
        binding them a cluster is invisible to others, so two must not start at once."""
        with open(self.workdir / ".create.lock", "w") as lock:

            def acquired() -> bool:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            wait_for(
                acquired, timeout=timeout, interval=0.2, what="another cluster to finish starting"
            )
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def create(
        self,
        nodes: Sequence[FakeNode] = DEFAULT_NODES,
        *,
        timeout: float = 300,
        extra_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Start the control plane, register ``nodes`` and wait until they are Ready.

        ``extra_options`` go into the kwokctl configuration (see realnode.py)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / f"{self.name}.config.yaml"
        kube_version = self.kube_version()
        with self._creation_lock(timeout=timeout):
            used = ports_in_configs(self.workdir / "clusters")
            picked = pick_ports(len(PORT_OPTIONS), used, port_is_free, random.Random())
            ports = dict(zip(PORT_OPTIONS, picked, strict=True))
            config = kwokctl_configuration(self.binaries, kube_version, ports, extra_options)
            config_path.write_text(render_config(config, STAGES_FILE.read_text()))
            try:
                # --kubeconfig= keeps kwokctl away from ~/.kube/config.
                self.kwokctl(
                    "create",
                    "cluster",
                    "--config",
                    str(config_path),
                    "--kubeconfig=",
                    f"--wait={int(timeout)}s",
                    f"--timeout={int(timeout)}s",
                    timeout=timeout + 60,
                )
            finally:
                config_path.unlink(missing_ok=True)
        self.add_nodes(nodes, kubelet_version=kube_version)
        self.wait_nodes_ready([n.name for n in nodes], timeout=timeout)
        self.wait_default_service_account(timeout=timeout)

    def delete(self) -> None:
        """Stop every component and remove the cluster's files; safe to call twice."""
        if self.exists():
            # kwokctl removes its context from --kubeconfig; point it at the cluster's own
            # file (deleted anyway) so the user's ~/.kube/config is never touched.
            self.kwokctl(
                "delete", "cluster", f"--kubeconfig={self.kubeconfig}", check=False, timeout=180
            )
        self._stop_leftover_components(grace=10.0)
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        shutil.rmtree(self.helm_home, ignore_errors=True)

    def _stop_leftover_components(self, *, grace: float) -> None:
        """Fallback when kwokctl could not stop a component: signal it by its pid file.

        A pid is only signalled while its command line still points into this cluster's
        directory, so a recycled pid is never hit.
        """
        pids = []
        for pid_file in sorted((self.cluster_dir / "pids").glob("*.pid")):
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(self.cluster_dir).encode() in cmdline:
                pids.append(pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                wait_for(
                    lambda: not any(pid_alive(p) for p in pids),
                    timeout=grace,
                    interval=0.2,
                    what="components to exit",
                )
                return
            except TimeoutError:
                continue

    def add_nodes(self, nodes: Sequence[FakeNode], *, kubelet_version: str) -> None:
        present = set(self.kubectl("get", "nodes", "-o", "name").stdout.split())
        items = [
            node_manifest(node, index, kubelet_version)
            for index, node in enumerate(nodes)
            if f"node/{node.name}" not in present
        ]
        if items:
            # create, not apply: a Node's status is only accepted on create.
            doc = {"apiVersion": "v1", "kind": "List", "items": items}
            self.kubectl("create", "-f", "-", input=json.dumps(doc))

    def wait_nodes_ready(
        self, names: Sequence[str], *, timeout: float, interval: float = 1.0
    ) -> None:
        def ready() -> bool:
            out = self.kubectl("get", "nodes", "-o", "json").stdout
            status = {
                item["metadata"]["name"]: {
                    c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])
                }
                for item in json.loads(out)["items"]
            }
            return all(status.get(name, {}).get("Ready") == "True" for name in names)

        wait_for(ready, timeout=timeout, interval=interval, what=f"nodes {', '.join(names)} Ready")

    def wait_default_service_account(self, *, timeout: float, interval: float = 1.0) -> None:
        """Pods cannot be created before the controller manager makes this account."""
        wait_for(
            lambda: (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            timeout=timeout,
            interval=interval,
            what="the default service account",
        )


@dataclasses.dataclass
class KubeCluster:
    """What the ``kube_cluster`` fixture yields: a running cluster and a client for it."""

    cluster: KwokCluster
    api_client: ApiClient

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.helm(*args, check=check, timeout=timeout)

    @contextlib.contextmanager
    def fresh_namespace(self, prefix: str) -> Iterator[str]:
        """A new namespace ``<prefix>-<random>``, deleted (without waiting) on exit."""
        from kubernetes import client  # the venv's; this module stays stdlib-only

        core = client.CoreV1Api(self.api_client)
        name = f"{prefix}-{secrets.token_hex(4)}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            core.delete_namespace(name)


def reap_stale_clusters(workdir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Delete test clusters whose pytest process is gone (killed before its teardown)."""
    clusters = workdir / "clusters"
    if not clusters.is_dir():
        return []
    reaped = []
    for entry in sorted(clusters.iterdir()):
        pid = owner_pid(entry.name)
        if pid is None or pid_alive(pid):
            continue
        KwokCluster.from_env(entry.name, env).delete()
        reaped.append(entry.name)
    return reaped


# ------------------------------------------------------------------------ command line


def _up_with_real_node(cluster: KwokCluster, timeout: float) -> None:
    # realnode imports this module; import it only when asked for.
    from realnode import RealNode, apiserver_patches

    node = RealNode.create_network(cluster, keep=True)
    try:
        cluster.create(timeout=timeout, extra_options=apiserver_patches(node.network))
        node.start(timeout=timeout)
    except BaseException:
        node.stop()
        cluster.delete()
        raise
    print(f"real node {node.name}: logs in {node.log_dir}", file=sys.stderr)
    print(f"its registry: make images REGISTRY={node.network.registry}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the loraland kwok test cluster by hand.")
    parser.add_argument("command", choices=["up", "down", "kubeconfig"])
    parser.add_argument("--name", default=DEV_CLUSTER_NAME)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="also start a real node where pods run (realnode.py; `make node-bin`, root)",
    )
    args = parser.parse_args(argv)
    try:
        cluster = KwokCluster.from_env(args.name)
        if args.command == "up":
            if cluster.exists():
                print(f"cluster {args.name} already exists", file=sys.stderr)
            else:
                # Ctrl-C during start-up must not leave half a cluster behind.
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                if args.real_node:
                    _up_with_real_node(cluster, args.timeout)
                else:
                    try:
                        cluster.create(timeout=args.timeout)
                    except BaseException:
                        cluster.delete()
                        raise
            print(cluster.kubectl("get", "nodes", "-o", "wide").stdout, file=sys.stderr)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            print(f"export PATH={cluster.binaries['kubectl'].parent}:$PATH")
        elif args.command == "down":
            from realnode import teardown_cluster_node

            teardown_cluster_node(cluster)
            cluster.delete()
            print(f"cluster {args.name} deleted", file=sys.stderr)
        else:
            print(cluster.kubeconfig)
    except (ClusterError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
