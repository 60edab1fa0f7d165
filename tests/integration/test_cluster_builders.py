"""The pure parts of cluster.py, checked without starting a cluster."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cluster import (
    BINARIES,
    DEFAULT_NODES,
    GPU_RESOURCE,
    GPU_TAINT,
    PORT_OPTIONS,
    ClusterError,
    FakeNode,
    bin_dir,
    find_binaries,
    go_sum_hash,
    kwokctl_configuration,
    node_manifest,
    owner_pid,
    parse_version,
    pick_ports,
    ports_in_configs,
    render_config,
    unique_name,
)

pytestmark = pytest.mark.integration


def test_default_nodes_are_two_gpu_nodes_and_one_cpu_node() -> None:
    assert sorted(n.gpus for n in DEFAULT_NODES) == [0, 8, 8]


def test_gpu_node_advertises_gpus_and_is_tainted() -> None:
    node = node_manifest(FakeNode("g", gpus=8), 3, "v1.36.3")
    assert node["status"]["capacity"][GPU_RESOURCE] == "8"
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert node["spec"]["taints"] == [GPU_TAINT]
    assert node["spec"]["podCIDR"] == "10.244.3.0/24"
    assert node["metadata"]["labels"]["nvidia.com/gpu.count"] == "8"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_cpu_node_has_no_gpus_and_no_taint() -> None:
    node = node_manifest(FakeNode("c"), 0, "v1.36.3")
    assert GPU_RESOURCE not in node["status"]["capacity"]
    assert "taints" not in node["spec"]


def test_kwokctl_configuration_names_every_binary_and_port() -> None:
    binaries = {name: Path("/bin") / name for name in BINARIES}
    ports = dict(zip(PORT_OPTIONS, range(20000, 20006), strict=True))
    options = kwokctl_configuration(binaries, "v1.36.3", ports)["options"]
    assert options["runtime"] == "binary"
    assert options["kubeApiserverBinary"] == "/bin/kube-apiserver"
    assert options["kwokControllerBinary"] == "/bin/kwok"
    assert options["etcdBinary"] == "/bin/etcd"
    assert {options[k] for k in PORT_OPTIONS} == set(range(20000, 20006))
    assert not any("://" in str(v) for v in options.values()), "nothing may be downloaded"


def test_render_config_puts_options_before_stages() -> None:
    text = render_config({"kind": "KwokctlConfiguration"}, "kind: Stage\n")
    first, second = text.split("\n---\n")
    assert json.loads(first) == {"kind": "KwokctlConfiguration"}
    assert second == "kind: Stage\n"


def test_kwok_manages_only_the_annotated_fake_nodes() -> None:
    binaries = {name: Path("/bin") / name for name in BINARIES}
    (patch,) = kwokctl_configuration(binaries, "v1", {})["componentsPatches"]
    args = {a["key"]: a["value"] for a in patch["extraArgs"]}
    assert patch["name"] == "kwok-controller"
    assert args["manage-all-nodes"] == "false"
    key, value = args["manage-nodes-with-annotation-selector"].split("=")
    assert node_manifest(FakeNode("c"), 0, "v1")["metadata"]["annotations"][key] == value


def test_kwokctl_configuration_takes_patches_and_extra_options() -> None:
    binaries = {name: Path("/bin") / name for name in BINARIES}
    patch = [{"name": "kube-apiserver", "extraArgs": [{"key": "k", "value": "v"}]}]
    config = kwokctl_configuration(
        binaries, "v1", {}, {"componentsPatches": patch, "kubeApiserverCertSANs": ["10.0.0.1"]}
    )
    assert config["componentsPatches"][1:] == patch
    assert config["options"]["kubeApiserverCertSANs"] == ["10.0.0.1"]
    assert "componentsPatches" not in config["options"]


def test_pick_ports_skips_used_and_busy_ports() -> None:
    ports = pick_ports(
        3, used={1, 2}, is_free=lambda p: p != 3, rng=random.Random(0), candidates=range(1, 7)
    )
    assert sorted(ports) == [4, 5, 6]
    with pytest.raises(ClusterError):
        pick_ports(
            4, used={1, 2}, is_free=lambda p: p != 3, rng=random.Random(0), candidates=range(1, 7)
        )


def test_ports_in_configs_reads_other_clusters(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kwok.yaml").write_text(
        "options:\n  etcdPort: 32765\n  kubeApiserverPort: 32764\n"
    )
    assert ports_in_configs(tmp_path) == {32765, 32764}


def test_unique_names_carry_the_owner_pid() -> None:
    name = unique_name()
    assert name != unique_name()
    assert owner_pid(name) is not None
    assert owner_pid("loraland-dev") is None


def test_parse_version() -> None:
    assert parse_version("Kubernetes v1.36.3\n") == "v1.36.3"
    with pytest.raises(ClusterError):
        parse_version("no version here")


def test_bin_dir_prefers_the_override_then_the_go_sum_key(tmp_path: Path) -> None:
    assert bin_dir({"LORALAND_CLUSTER_BIN": str(tmp_path)}) == tmp_path
    assert bin_dir({"LORALAND_CACHE": str(tmp_path)}) == tmp_path / "bin" / go_sum_hash()


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="make cluster-bin"):
        find_binaries(tmp_path)
