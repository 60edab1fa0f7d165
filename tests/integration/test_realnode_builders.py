"""The pure parts of realnode.py, checked without starting a node."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from cluster import BINARIES, kwokctl_configuration
from realnode import (
    DNS_SERVICE_IP,
    REAL_NODE_TAINT,
    NodeNetwork,
    apiserver_patches,
    cni_conflist,
    containerd_config,
    dns_manifests,
    kubeconfig_for,
    kubelet_config,
    mounts_under,
    node_source_hash,
    parse_mountinfo,
    pick_index,
    provisioner_manifests,
)

pytestmark = pytest.mark.integration


def test_node_network_addresses_are_distinct_per_index() -> None:
    a, b = NodeNetwork(3, "abc123"), NodeNetwork(4, "def456")
    assert (a.host_ip, a.node_ip, a.pod_cidr) == ("10.201.3.1", "10.201.3.2", "10.202.3.0/24")
    assert a.registry == "10.201.3.1:5000"
    assert {a.host_ip, a.node_ip}.isdisjoint({b.host_ip, b.node_ip})
    assert len(a.host_veth) <= 15  # Linux interface names


def test_pick_index_avoids_used_indexes_and_routed_blocks() -> None:
    routed = [ipaddress.ip_network("10.201.0.0/24"), ipaddress.ip_network("10.202.1.0/24")]
    assert pick_index({2}, routed, rng_seed=0) == 3
    # A route covering both blocks leaves nothing.
    with pytest.raises(Exception, match="no free address block"):
        pick_index(set(), [ipaddress.ip_network("10.0.0.0/8")], rng_seed=0)


def test_apiserver_patches_point_logs_at_the_internal_ip() -> None:
    net = NodeNetwork(7, "aaaaaa")
    binaries = {name: Path("/bin") / name for name in BINARIES}
    config = kwokctl_configuration(binaries, "v1", {}, apiserver_patches(net))
    args = {
        a["key"]: a["value"]
        for p in config["componentsPatches"]
        if p["name"] == "kube-apiserver"
        for a in p["extraArgs"]
    }
    assert args["kubelet-preferred-address-types"] == "InternalIP"
    assert args["advertise-address"] == net.host_ip
    assert net.host_ip in config["options"]["kubeApiserverCertSANs"]


def test_kubeconfig_for_keeps_verifying_the_servers_certificate() -> None:
    admin = {"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}]}
    out = kubeconfig_for(admin, "https://10.201.0.1:1")
    assert out["clusters"][0]["cluster"]["server"] == "https://10.201.0.1:1"
    assert out["clusters"][0]["cluster"]["tls-server-name"] == "127.0.0.1"
    assert "insecure-skip-tls-verify" not in out["clusters"][0]["cluster"]
    assert admin["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_kubelet_config_runs_on_this_vm_and_taints_the_node() -> None:
    config = kubelet_config(
        node_ip="10.201.0.2", runtime_endpoint="unix:///x", cgroup_root="/l", pod_cidr="p"
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["clusterDNS"] == [DNS_SERVICE_IP]
    assert config["registerWithTaints"] == [REAL_NODE_TAINT]
    assert config["readOnlyPort"] == 0


def test_containerd_config_is_private_and_uses_the_wrapper() -> None:
    text = containerd_config(
        root=Path("/n/root"),
        state=Path("/r/state"),
        address=Path("/r/c.sock"),
        cni_bin=Path("/n/cni-bin"),
        cni_conf=Path("/n/cni"),
        certs_d=Path("/n/certs.d"),
        runc_wrapper=Path("/b/runc-oom"),
        sandbox_image="10.201.0.1:5000/loraland/pause:v1",
    )
    assert 'root = "/n/root"' in text and 'address = "/r/c.sock"' in text
    assert 'BinaryName = "/b/runc-oom"' in text
    assert "netns_mounts_under_state_dir = true" in text
    assert "io.containerd.nri.v1.nri" in text


def test_cni_bridge_routes_through_the_first_address() -> None:
    conf = cni_conflist("10.202.5.0/24")
    assert conf["plugins"][0]["ipam"]["ranges"][0][0]["gateway"] == "10.202.5.1"


def test_dns_service_points_at_the_node() -> None:
    service, endpoints = dns_manifests("10.201.0.2")
    assert service["spec"]["clusterIP"] == DNS_SERVICE_IP
    assert endpoints["endpoints"][0]["addresses"] == ["10.201.0.2"]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"


def test_provisioned_volumes_are_local_and_root_owned() -> None:
    objs = {o["kind"]: o for o in provisioner_manifests(Path("/pv"), "img")}
    sc = objs["StorageClass"]
    assert sc["metadata"]["annotations"]["defaultVolumeType"] == "local"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    data = objs["ConfigMap"]["data"]
    assert "mkdir -m 0755" in data["setup"]
    assert json.loads(data["config.json"])["nodePathMap"][0]["paths"] == ["/pv"]


def test_mounts_under_orders_deepest_first_and_ignores_others() -> None:
    info = (
        "1 0 0:1 / / rw - ext4 x rw\n"
        "2 1 0:2 / /n/kubelet/pods/a rw - tmpfs t rw\n"
        "3 1 0:3 / /n/kubelet/pods/a/v\\040x rw - tmpfs t rw\n"
        "4 1 0:4 / /nn rw - tmpfs t rw\n"
    )
    points = parse_mountinfo(info)
    assert mounts_under(points, [Path("/n")]) == ["/n/kubelet/pods/a/v x", "/n/kubelet/pods/a"]


def test_node_source_hash_is_stable() -> None:
    assert node_source_hash() == node_source_hash()
    assert len(node_source_hash()) == 12


def _requirements(go_mod: Path) -> dict[str, str]:
    reqs = {}
    for line in go_mod.read_text().splitlines():
        words = line.replace("require ", "").split()
        if len(words) >= 2 and words[1].startswith("v") and "=>" not in line:
            reqs[words[0]] = words[1]
    return reqs


def test_node_kube_module_shares_the_control_planes_versions() -> None:
    hack = Path(__file__).resolve().parents[2] / "hack"
    control_plane = _requirements(hack / "go.mod")
    node = _requirements(hack / "node" / "kube" / "go.mod")
    # Staging modules (k8s.io/*) are replaced to one version in both, whatever they list.
    differ = {
        m: (v, node[m])
        for m, v in control_plane.items()
        if m in node and node[m] != v and not m.startswith("k8s.io/")
    }
    assert not differ, f"pin these in hack/node/kube/go.mod at hack/go.mod's versions: {differ}"
