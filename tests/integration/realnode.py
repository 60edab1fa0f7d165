"""A real worker node beside the kwok nodes: kubelet, containerd, kube-proxy, CNI, DNS.

`make node-bin` (hack/node/build.sh) builds the binaries into
``$LORALAND_CACHE/bin/node-<hash>/``. :class:`RealNode` turns them into one node of a
cluster made by cluster.py, where pods really run:

* Everything that touches the network runs in its own network namespace (``ip netns``),
  joined to the host by a veth pair: containerd and the pods' bridge, the kubelet (its
  probes reach pod IPs), kube-proxy (its iptables rules live in that namespace only, so
  two test sessions never fight over KUBE-* chains) and CoreDNS. Deleting the namespace
  removes the bridge, the veth pair and every rule at once.
* The host side of the veth pair (``host_ip``) is the API server's advertised address and
  where the registry listens; the node side (``node_ip``) is the node's InternalIP, which
  the API server uses for ``kubectl logs/exec`` (``--kubelet-preferred-address-types``).
* Pods, and the daemons that start them, live in cgroups under ``/loraland-<id>``
  (the kubelet's ``cgroupRoot``), so teardown finds and kills every process the node
  started, including containers whose shim outlived containerd.
* CoreDNS answers for ``cluster.local`` behind the ``kube-dns`` Service; the
  distribution registry holds the images (storage shared through the cache, so a pushed
  layer is pushed once); local-path-provisioner makes PersistentVolumes of type ``local``
  (the kubelet applies ``fsGroup`` to those, as to a cloud disk) under the node's
  directory, owned by root with mode 0755 like a fresh file system.

The node is labelled :data:`REAL_NODE_LABEL` and tainted :data:`REAL_NODE_TAINT`, so only
pods that tolerate it land there. kwok manages only nodes annotated as fake (see
cluster.py), never this one.

Only the standard library is used, as in cluster.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster import ClusterError, KwokCluster, cache_dir, pid_alive, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_HACK_DIR = REPO_ROOT / "hack" / "node"

NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
    "coredns",
    "registry",
    "local-path-provisioner",
    "pause",
    "runc-oom",
    "testserver",
    "ocipush",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")

REAL_NODE_LABEL = "loraland.dev/real-node"
REAL_NODE_TAINT: dict[str, str] = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
REAL_NODE_TOLERATION: dict[str, str] = {
    "key": REAL_NODE_LABEL,
    "operator": "Exists",
    "effect": "NoSchedule",
}
REAL_NODE_SELECTOR: dict[str, str] = {REAL_NODE_LABEL: "true"}

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
REGISTRY_PORT = 5000
STORAGE_CLASS = "local-path"
PROVISIONER_NAMESPACE = "local-path-storage"
# Address blocks for the veth links and the pod bridges: one /24 of each per node, picked
# by index. Neither block is routed anywhere on this machine (checked before use).
LINK_BLOCK = ipaddress.ip_network("10.201.0.0/16")
POD_BLOCK = ipaddress.ip_network("10.202.0.0/16")
NETNS_PREFIX = "llnode-"
CGROUP_FS = Path("/sys/fs/cgroup")
RUN_BASE = Path("/run/loraland")

# The tiny images the node itself needs, built by ocipush from this repository's programs
# and Debian's static busybox; repositories in the registry.
PAUSE_IMAGE = "loraland/pause:v1"
TESTSERVER_IMAGE = "loraland/testserver:v1"
BUSYBOX_IMAGE = "loraland/busybox:v1"
BUSYBOX = Path("/bin/busybox")


def node_bin_dir(env: Mapping[str, str]) -> Path:
    """``$LORALAND_NODE_BIN`` or the directory hack/node/build.sh prints."""
    override = env.get("LORALAND_NODE_BIN")
    if override:
        return Path(override).absolute()
    return cache_dir(env) / "bin" / f"node-{node_source_hash()}"


def node_source_hash(node_dir: Path = NODE_HACK_DIR) -> str:
    """The cache key of hack/node/build.sh: sha256 over its inputs' sha256sum lines."""
    # The same bytes as build.sh's `find | LC_ALL=C sort | xargs sha256sum | sha256sum`.
    files = sorted(
        "./" + p.relative_to(node_dir).as_posix()
        for p in node_dir.rglob("*")
        if p.is_file() and (p.suffix in {".go", ".sh"} or p.name in {"go.mod", "go.sum"})
    )
    lines = "".join(
        f"{hashlib.sha256((node_dir / f).read_bytes()).hexdigest()}  {f}\n" for f in files
    )
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def find_node_binaries(directory: Path) -> dict[str, Path]:
    paths = {name: directory / name for name in NODE_BINARIES}
    missing = [n for n, p in paths.items() if not os.access(p, os.X_OK)]
    if missing:
        raise ClusterError(
            f"real node binaries missing from {directory}: {', '.join(missing)}. "
            "Run `make node-bin` (or point LORALAND_NODE_BIN at a directory holding them)."
        )
    return paths


# ------------------------------------------------------------------------ pure builders


@dataclasses.dataclass(frozen=True)
class NodeNetwork:
    """The addresses of node number ``index`` (0..255)."""

    index: int
    node_id: str

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.node_id

    @property
    def host_veth(self) -> str:
        return f"llh{self.node_id}"

    @property
    def host_ip(self) -> str:
        return str(LINK_BLOCK.network_address + (self.index << 8) + 1)

    @property
    def node_ip(self) -> str:
        return str(LINK_BLOCK.network_address + (self.index << 8) + 2)

    @property
    def pod_cidr(self) -> str:
        return str(ipaddress.ip_network(f"{POD_BLOCK.network_address + (self.index << 8)}/24"))

    @property
    def registry(self) -> str:
        return f"{self.host_ip}:{REGISTRY_PORT}"


def apiserver_patches(network: NodeNetwork) -> dict[str, Any]:
    """kwokctl options for a control plane that serves a real node (merged into options)."""
    return {
        "kubeApiserverCertSANs": [KUBERNETES_SERVICE_IP, network.host_ip],
        "componentsPatches": [
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    # logs/exec go to the node's InternalIP, not its (unresolvable) name.
                    {"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                    {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                    # Pods reach the API server through the `kubernetes` Service, whose
                    # endpoint is this address: the host end of the node's veth link.
                    {"key": "advertise-address", "value": network.host_ip},
                    # Webhooks behind a Service (the chart's operator) are called at their
                    # pod's IP, which the host routes to the node. A ClusterIP means nothing
                    # on the host (kube-proxy's rules live in the node's namespace only), as
                    # on clusters whose API servers sit outside the pod network.
                    {"key": "enable-aggregator-routing", "value": "true"},
                ],
            },
            {
                "name": "kube-controller-manager",
                "extraArgs": [{"key": "service-cluster-ip-range", "value": SERVICE_CIDR}],
            },
        ],
    }


def kubeconfig_for(admin_kubeconfig: Mapping[str, Any], server: str) -> dict[str, Any]:
    """The admin kubeconfig pointed at ``server``, still verifying the API server's cert
    (issued for 127.0.0.1, so that name is what the client checks)."""
    config = json.loads(json.dumps(admin_kubeconfig))
    for entry in config["clusters"]:
        entry["cluster"]["server"] = server
        entry["cluster"]["tls-server-name"] = "127.0.0.1"
    return config


def containerd_config(
    *,
    root: Path,
    state: Path,
    address: Path,
    cni_bin: Path,
    cni_conf: Path,
    certs_d: Path,
    runc_wrapper: Path,
    sandbox_image: str,
) -> str:
    """containerd 2.x configuration (version 3): private root, state and socket."""
    return f"""version = 3
root = "{root}"
state = "{state}"
# NRI's socket is machine-wide; a test node needs none of it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{certs_d}"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime"]
  # Pod network namespaces stay under this node's state, not in the machine's /run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        # See hack/node/tools/cmd/runc-oom: this VM denies negative oom_score_adj.
        BinaryName = "{runc_wrapper}"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's hosts.toml: the registry speaks plain HTTP (it is on our own link)."""
    return f"""server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
"""


def cni_conflist(pod_cidr: str) -> dict[str, Any]:
    gateway = str(ipaddress.ip_network(pod_cidr).network_address + 1)
    return {
        "cniVersion": "1.0.0",
        "name": "loraland",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    *,
    node_ip: str,
    runtime_endpoint: str,
    cgroup_root: str,
    pod_cidr: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This VM has cgroup v1 (hybrid); Kubernetes after 1.35 refuses it unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "containerRuntimeEndpoint": runtime_endpoint,
        "address": node_ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        # A throwaway node reachable only from this machine: anyone may call its API.
        "authentication": {
            "anonymous": {"enabled": True},
            "webhook": {"enabled": False},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # No upstream resolvers: nothing outside this machine can be reached anyway.
        "resolvConf": "",
        "podCIDR": pod_cidr,
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        # The machine's disk is shared with other work: evict only when it is really full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 30,
        "registerWithTaints": [dict(REAL_NODE_TAINT)],
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(*, kubeconfig: Path, hostname: str, pod_cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": hostname,
        "clusterCIDR": pod_cidr,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # nf_conntrack_max is machine-wide: leave it alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }


def corefile(kubeconfig: Path) -> str:
    return f""".:53 {{
    errors
    health 127.0.0.1:8181
    ready 127.0.0.1:8182
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
    loadbalance
}}
"""


def registry_config(storage: Path, addr: str) -> str:
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def dns_manifests(node_ip: str) -> list[dict[str, Any]]:
    """The kube-dns Service, its endpoint being CoreDNS in the node's namespace."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {"clusterIP": DNS_SERVICE_IP, "ports": [dict(p) for p in ports]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-coredns",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": "loraland-test",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
            "ports": [dict(p) for p in ports],
        },
    ]


# The helper pod's scripts. A new volume is owned by root with mode 0755, as a freshly
# formatted cloud disk is: only a pod with the right fsGroup (applied by the kubelet to
# `local` volumes) or running as root can write to it.
SETUP_SCRIPT = '#!/bin/sh\nset -eu\nmkdir -m 0755 -p "$VOL_DIR"\n'
TEARDOWN_SCRIPT = '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n'


def provisioner_manifests(pv_dir: Path, helper_image: str) -> list[dict[str, Any]]:
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "containers": [
                {"name": "helper-pod", "image": helper_image, "imagePullPolicy": "IfNotPresent"}
            ]
        },
    }
    config = {
        "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(pv_dir)]}]
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROVISIONER_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": PROVISIONER_NAMESPACE},
            "data": {
                "config.json": json.dumps(config),
                "setup": SETUP_SCRIPT,
                "teardown": TEARDOWN_SCRIPT,
                "helperPod.yaml": json.dumps(helper_pod),
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {
                    "storageclass.kubernetes.io/is-default-class": "true",
                    # PVs of type `local`: the kubelet applies fsGroup to them (not to hostPath).
                    "defaultVolumeType": "local",
                },
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]


def parse_mountinfo(text: str) -> list[str]:
    """Mount points from /proc/self/mountinfo, octal escapes decoded."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def mounts_under(points: Sequence[str], roots: Sequence[Path]) -> list[str]:
    """Mount points at or below any of ``roots``, deepest first (the order to unmount)."""
    prefixes = [str(r).rstrip("/") for r in roots]
    hits = [p for p in points if any(p == r or p.startswith(r + "/") for r in prefixes)]
    return sorted(set(hits), key=lambda p: (-p.count("/"), p))


def pick_index(used: set[int], routed: Sequence[ipaddress.IPv4Network], rng_seed: int) -> int:
    """A node index whose link and pod /24s are in use by no node and no route."""
    order = [(rng_seed + i) % 256 for i in range(256)]
    for index in order:
        if index in used:
            continue
        nets = [
            ipaddress.ip_network(f"{LINK_BLOCK.network_address + (index << 8)}/24"),
            ipaddress.ip_network(f"{POD_BLOCK.network_address + (index << 8)}/24"),
        ]
        if not any(n.overlaps(r) for n in nets for r in routed):
            return index
    raise ClusterError("no free address block for a real node")


# ---------------------------------------------------------------------------- the node


def node_dir_of(cluster: KwokCluster) -> Path:
    """Beside kwokctl's own cluster directory, which kwokctl creates and deletes."""
    return cluster.workdir / "nodes" / cluster.name


@dataclasses.dataclass
class RealNode:
    """One real node of ``cluster``; its files live in ``<cluster dir>/node``."""

    cluster: KwokCluster
    binaries: Mapping[str, Path]
    network: NodeNetwork
    registry_storage: Path
    # The pytest process whose death lets the next session reap this node; None for a
    # node that `make cluster-up` leaves running until `make cluster-down`.
    owner_pid: int | None = dataclasses.field(default_factory=os.getpid)

    @classmethod
    def create_network(
        cls, cluster: KwokCluster, env: Mapping[str, str] | None = None, *, keep: bool = False
    ) -> RealNode:
        """Choose this node's id and addresses and make its network, under a lock so two
        sessions never pick the same addresses (the routes made here mark them taken)."""
        env = os.environ if env is None else env
        binaries = find_node_binaries(node_bin_dir(env))
        with _locked(cluster.workdir / ".realnode.lock"):
            node = cls._plan(cluster, binaries, env)
            if keep:
                node.owner_pid = None
            try:
                node.setup_network()
            except BaseException:
                node.stop()
                raise
        return node

    @classmethod
    def _plan(
        cls, cluster: KwokCluster, binaries: Mapping[str, Path], env: Mapping[str, str]
    ) -> RealNode:
        node_id = secrets.token_hex(3)
        used = set()
        for state in (cluster.workdir / "nodes").glob("*/state.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                used.add(int(json.loads(state.read_text())["index"]))
        index = pick_index(used, _routes(), int(node_id, 16))
        return cls(
            cluster=cluster,
            binaries=binaries,
            network=NodeNetwork(index=index, node_id=node_id),
            registry_storage=cache_dir(env) / "registry",
        )

    # -- paths

    @property
    def name(self) -> str:
        return f"real-{self.network.node_id}"

    @property
    def node_dir(self) -> Path:
        return node_dir_of(self.cluster)

    @property
    def run_dir(self) -> Path:
        # Unix socket paths must stay short (108 bytes): containerd's shims put theirs here.
        return RUN_BASE / self.network.node_id

    @property
    def log_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def cgroup_name(self) -> str:
        return f"loraland-{self.network.node_id}"

    @property
    def pv_dir(self) -> Path:
        return self.node_dir / "pv"

    def image(self, repository: str) -> str:
        """A reference the node pulls from the test registry."""
        return f"{self.network.registry}/{repository}"

    def log_hint(self) -> str:
        return f"see the logs in {self.log_dir}"

    # -- lifecycle

    def write_state(self) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "index": self.network.index,
            "node_id": self.network.node_id,
            "owner_pid": self.owner_pid,
        }
        (self.node_dir / "state.json").write_text(json.dumps(state))

    def start(self, *, timeout: float = 300) -> None:
        """Bring the node up on the (already created) cluster and wait until it is Ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._start_registry()
        self._push_node_images()
        self._setup_cgroups()
        self._start_daemon("containerd", ["--config", str(self.node_dir / "containerd.toml")])
        sock = self.run_dir / "containerd.sock"
        wait_for(
            sock.exists, timeout=60, interval=0.2, what=f"containerd's socket ({self.log_hint()})"
        )
        self._start_daemon(
            "kubelet",
            [
                f"--config={self.node_dir / 'kubelet.json'}",
                f"--kubeconfig={self.node_dir / 'kubeconfig.json'}",
                f"--root-dir={self.node_dir / 'kubelet'}",
                f"--cert-dir={self.node_dir / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.node_ip}",
                f"--node-labels={REAL_NODE_LABEL}=true",
                "--v=2",
            ],
        )
        self._start_daemon("kube-proxy", [f"--config={self.node_dir / 'kube-proxy.json'}", "--v=2"])
        self._start_daemon("coredns", ["-conf", str(self.node_dir / "Corefile")])
        self.cluster.kubectl("apply", "-f", "-", input=_list(dns_manifests(self.network.node_ip)))
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=_list(provisioner_manifests(self.pv_dir, self.image(BUSYBOX_IMAGE))),
        )
        self._start_daemon(
            "local-path-provisioner",
            [
                "--debug",
                "start",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--namespace={PROVISIONER_NAMESPACE}",
                f"--helper-image={self.image(BUSYBOX_IMAGE)}",
                "--service-account-name=default",
            ],
            in_netns=False,
        )
        self.cluster.wait_nodes_ready([self.name], timeout=timeout)

    def stop(self) -> None:
        """Kill everything the node started and remove what it made; safe to call twice."""
        teardown(self.node_dir, self.network.node_id)

    # -- pieces

    def _write_configs(self) -> None:
        net = self.network
        self.write_state()
        admin = json.loads(
            self.cluster.kubectl("config", "view", "--raw", "--flatten", "-o", "json").stdout
        )
        kubeconfig = self.node_dir / "kubeconfig.json"
        server = f"https://{net.host_ip}:{_server_port(admin)}"
        kubeconfig.write_text(json.dumps(kubeconfig_for(admin, server)))
        kubeconfig.chmod(0o600)
        cni_bin = self.node_dir / "cni-bin"
        cni_bin.mkdir(exist_ok=True)
        for plugin in CNI_PLUGINS:
            link = cni_bin / plugin
            link.unlink(missing_ok=True)
            link.symlink_to(self.binaries[plugin])
        cni_conf = self.node_dir / "cni"
        cni_conf.mkdir(exist_ok=True)
        (cni_conf / "10-loraland.conflist").write_text(json.dumps(cni_conflist(net.pod_cidr)))
        certs_d = self.node_dir / "certs.d" / net.registry
        certs_d.mkdir(parents=True, exist_ok=True)
        (certs_d / "hosts.toml").write_text(registry_hosts_toml(net.registry))
        (self.node_dir / "containerd.toml").write_text(
            containerd_config(
                root=self.node_dir / "containerd",
                state=self.run_dir / "state",
                address=self.run_dir / "containerd.sock",
                cni_bin=cni_bin,
                cni_conf=cni_conf,
                certs_d=self.node_dir / "certs.d",
                runc_wrapper=self.binaries["runc-oom"],
                sandbox_image=self.image(PAUSE_IMAGE),
            )
        )
        (self.node_dir / "kubelet.json").write_text(
            json.dumps(
                kubelet_config(
                    node_ip=net.node_ip,
                    runtime_endpoint=f"unix://{self.run_dir / 'containerd.sock'}",
                    cgroup_root=f"/{self.cgroup_name}",
                    pod_cidr=net.pod_cidr,
                )
            )
        )
        (self.node_dir / "kube-proxy.json").write_text(
            json.dumps(
                kube_proxy_config(kubeconfig=kubeconfig, hostname=self.name, pod_cidr=net.pod_cidr)
            )
        )
        (self.node_dir / "Corefile").write_text(corefile(kubeconfig))
        (self.node_dir / "registry.yaml").write_text(
            registry_config(self.registry_storage, net.registry)
        )
        self.pv_dir.mkdir(exist_ok=True)

    def setup_network(self) -> None:
        """The namespace, the veth link and the route to the pods (before the cluster, whose
        API server advertises the host end of the link)."""
        net = self.network
        self.write_state()
        _sh(["ip", "netns", "add", net.netns])
        _sh(
            [
                "ip",
                "link",
                "add",
                net.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                net.netns,
            ]
        )
        _sh(["ip", "addr", "add", f"{net.host_ip}/24", "dev", net.host_veth])
        _sh(["ip", "link", "set", net.host_veth, "up"])
        inside = ["ip", "netns", "exec", net.netns]
        _sh([*inside, "ip", "link", "set", "lo", "up"])
        _sh([*inside, "ip", "addr", "add", f"{net.node_ip}/24", "dev", "eth0"])
        _sh([*inside, "ip", "link", "set", "eth0", "up"])
        _sh([*inside, "ip", "route", "add", "default", "via", net.host_ip])
        # Forwarding between the bridge and the link, and bridged traffic through iptables
        # (kube-proxy's Service rules), inside the namespace only.
        if shutil.which("modprobe"):  # kernels with these built in have no modprobe
            _sh(["modprobe", "br_netfilter"], check=False)
            _sh(["modprobe", "overlay"], check=False)
        _sh([*inside, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        _sh([*inside, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"], check=False)
        # The host reaches pod IPs (and the pods' replies find their way back) through the node.
        _sh(["ip", "route", "add", net.pod_cidr, "via", net.node_ip])

    def _setup_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            path = hierarchy / self.cgroup_name
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                # A new v1 cpuset starts empty; a task cannot join it until it has cpus and mems.
                for key in ("cpuset.cpus", "cpuset.mems"):
                    (path / key).write_text((hierarchy / key).read_text())
            (path / "daemons").mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                for key in ("cpuset.cpus", "cpuset.mems"):
                    (path / "daemons" / key).write_text((hierarchy / key).read_text())

    def _join_cgroups(self, pid: int) -> None:
        for hierarchy in _cgroup_hierarchies():
            with contextlib.suppress(OSError):
                (hierarchy / self.cgroup_name / "daemons" / "cgroup.procs").write_text(str(pid))

    def _start_daemon(self, binary: str, args: Sequence[str], *, in_netns: bool = True) -> int:
        cmd = [str(self.binaries[binary]), *args]
        if in_netns:
            # nsenter --net only: the daemons share the machine's mount namespace, so the
            # kubelet's volume mounts are visible to containerd.
            cmd = ["nsenter", f"--net=/run/netns/{self.network.netns}", *cmd]
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.node_dir / "kubeconfig.json")
        env["PATH"] = os.pathsep.join(
            [str(self.binaries["containerd"].parent), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        )
        log = open(self.log_dir / f"{binary}.log", "ab")  # noqa: SIM115 - owned by the child
        with log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.node_dir,
                start_new_session=True,
            )
        self._join_cgroups(proc.pid)
        pids = self.node_dir / "pids"
        pids.mkdir(exist_ok=True)
        (pids / f"{binary}.pid").write_text(str(proc.pid))
        time.sleep(0.5)
        if proc.poll() is not None:
            raise ClusterError(
                f"{binary} exited {proc.returncode} at start; "
                f"see {self.log_dir / (binary + '.log')}"
            )
        return proc.pid

    def _start_registry(self) -> None:
        self.registry_storage.mkdir(parents=True, exist_ok=True)
        self._start_daemon(
            "registry", ["serve", str(self.node_dir / "registry.yaml")], in_netns=False
        )

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://{self.network.registry}/v2/", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(answers, timeout=60, interval=0.3, what=f"the registry ({self.log_hint()})")

    def push(
        self,
        repository: str,
        files: Mapping[str, Path | str],
        *,
        entrypoint: Sequence[str],
        user: str = "",
    ) -> str:
        """Build and push a one-layer image (ocipush); returns the node's reference."""
        args = [
            str(self.binaries["ocipush"]),
            "-registry",
            f"http://{self.network.registry}",
            "-image",
            repository,
        ]
        for word in entrypoint:
            args += ["-entrypoint", word]
        if user:
            args += ["-user", user]
        for dest, src in files.items():
            args.append(f"{dest}@{src}" if isinstance(src, str) else f"{dest}={src}")
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ClusterError(f"pushing {repository} failed: {result.stderr}")
        return self.image(repository)

    def _push_node_images(self) -> None:
        self.push(
            PAUSE_IMAGE, {"/pause": self.binaries["pause"]}, entrypoint=["/pause"], user="65535"
        )
        self.push(
            TESTSERVER_IMAGE,
            {"/testserver": self.binaries["testserver"]},
            entrypoint=["/testserver"],
        )
        applets = [
            "sh",
            "mkdir",
            "rm",
            "chmod",
            "chown",
            "ls",
            "cat",
            "echo",
            "sleep",
            "id",
            "touch",
            "stat",
            "wget",
            "nslookup",
            "env",
        ]
        files: dict[str, Path | str] = {"/bin/busybox": BUSYBOX}
        files |= {f"/bin/{a}": "busybox" for a in applets}
        self.push(BUSYBOX_IMAGE, files, entrypoint=[])


# ----------------------------------------------------------------------------- teardown


def teardown(node_dir: Path, node_id: str, *, grace: float = 5.0) -> None:
    """Kill the node's processes (daemons and every pod), unmount, delete its network
    namespace, cgroups and files. Works from the files alone, so a later session can reap
    a node whose pytest was killed."""
    run_dir = RUN_BASE / node_id
    cgroup = f"loraland-{node_id}"
    # Daemons first (SIGTERM, so containerd and the kubelet stop cleanly), then anything
    # left in the node's cgroups: containers, shims, daemons that ignored SIGTERM.
    pids = []
    for pid_file in sorted((node_dir / "pids").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if str(node_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        wait_for(
            lambda: not any(pid_alive(p) for p in pids),
            timeout=grace,
            interval=0.2,
            what="node daemons to exit",
        )
    for _ in range(50):
        left = _cgroup_pids(cgroup) | {p for p in pids if pid_alive(p)}
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        points = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        for point in mounts_under(points, [node_dir, run_dir]):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    _remove_cgroups(cgroup)
    netns = NETNS_PREFIX + node_id
    if (Path("/run/netns") / netns).exists():
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", f"llh{node_id}"], capture_output=True, check=False)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(node_dir, ignore_errors=True)


def teardown_cluster_node(cluster: KwokCluster) -> bool:
    """Tear down ``cluster``'s real node, if it has one (`make cluster-down`)."""
    state_file = node_dir_of(cluster) / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return False
    teardown(state_file.parent, str(state["node_id"]))
    return True


def reap_stale_nodes(workdir: Path) -> list[str]:
    """Tear down nodes whose owning pytest is gone (killed before its teardown)."""
    reaped = []
    for state_file in sorted((workdir / "nodes").glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(state_file.read_text())
            if state["owner_pid"] is None or pid_alive(int(state["owner_pid"])):
                continue
            teardown(state_file.parent, str(state["node_id"]))
            reaped.append(str(state["node_id"]))
    return reaped


# ------------------------------------------------------------------------------ helpers


def _list(items: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def _server_port(kubeconfig: Mapping[str, Any]) -> int:
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1].rstrip("/"))


def _sh(cmd: Sequence[str], *, check: bool = True) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")


def _routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in {"default", "broadcast", "local", "unreachable"}:
            word = line.split()[1] if word != "default" else ""
        with contextlib.suppress(ValueError):
            if word:
                nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted v1 hierarchy (cgroupfs puts a pod's cgroup in each) and the v2 one."""
    if not CGROUP_FS.is_dir():
        return []
    return sorted(
        p
        for p in CGROUP_FS.iterdir()
        if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()
    )


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids |= {int(p) for p in procs.read_text().split()}
    return pids


def _remove_cgroups(name: str) -> None:
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, root]:
            with contextlib.suppress(OSError):
                d.rmdir()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
