"""What the server may still allocate: host MemAvailable bounded by cgroup limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from loraland.serving.memory import (
    CgroupMemory,
    available_memory,
    cgroup_dirs,
    parse_inactive_file,
    parse_limit,
    parse_meminfo_available,
    read_available,
)

GIB = 1024**3
MEMINFO = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20971520 kB\n"


def test_meminfo_available() -> None:
    assert parse_meminfo_available(MEMINFO) == 20 * GIB
    assert parse_meminfo_available("MemTotal: 1 kB\n") is None


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("max\n", None),  # v2: no limit
        ("9223372036854771712\n", None),  # v1: unset, 2^63 rounded to a page
        ("3221225472\n", 3 * GIB),  # a 3Gi pod limit, either version
        ("", None),
    ],
)
def test_limit_values(text: str, limit: int | None) -> None:
    assert parse_limit(text) == limit


def test_inactive_file_prefers_the_v1_subtree_total() -> None:
    assert parse_inactive_file("anon 10\ninactive_file 300\nactive_file 5\n") == 300
    v1 = "inactive_file 100\ntotal_inactive_file 400\n"
    assert parse_inactive_file(v1) == 400
    assert parse_inactive_file("") == 0


def test_a_pod_limit_bounds_the_host() -> None:
    # A 3 GiB pod that uses 1.5 GiB, 0.5 GiB of it reclaimable page cache, on a host
    # with 20 GiB available: 2 GiB left, not 20.
    pod = CgroupMemory(limit=3 * GIB, usage=3 * GIB // 2, inactive_file=GIB // 2)
    assert available_memory(20 * GIB, [pod]) == 2 * GIB


def test_no_limit_leaves_the_host_figure() -> None:
    unlimited = CgroupMemory(limit=None, usage=5 * GIB)
    assert available_memory(20 * GIB, [unlimited]) == 20 * GIB
    assert available_memory(None, []) is None


def test_the_tightest_of_nested_limits_wins_and_an_overfull_one_gives_zero() -> None:
    container = CgroupMemory(limit=8 * GIB, usage=GIB)
    pod = CgroupMemory(limit=4 * GIB, usage=2 * GIB)
    assert available_memory(20 * GIB, [container, pod]) == 2 * GIB
    full = CgroupMemory(limit=GIB, usage=2 * GIB)
    assert available_memory(20 * GIB, [full]) == 0
    assert available_memory(GIB, [container]) == GIB  # the host can be the tighter one


def test_cgroup_dirs_walk_from_own_cgroup_to_the_mount(tmp_path: Path) -> None:
    v2 = cgroup_dirs("0::/kubepods/pod1/ctr\n", tmp_path)
    assert v2 == [
        tmp_path / "kubepods/pod1/ctr",
        tmp_path / "kubepods/pod1",
        tmp_path / "kubepods",
        tmp_path,
    ]
    v1 = cgroup_dirs("5:cpu,cpuacct:/x\n4:memory:/pod/ctr\n0::/\n", tmp_path)
    assert v1 == [
        tmp_path / "memory/pod/ctr",
        tmp_path / "memory/pod",
        tmp_path / "memory",
        tmp_path,
    ]


def test_read_available_from_files(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "self" / "cgroup").write_text("0::/pod\n")
    pod = root / "pod"
    pod.mkdir(parents=True)
    (pod / "memory.max").write_text("3221225472\n")
    (pod / "memory.current").write_text(f"{GIB}\n")
    (pod / "memory.stat").write_text("inactive_file 0\n")
    (root / "memory.max").write_text("max\n")  # the mount root: no limit
    (root / "memory.current").write_text(f"{10 * GIB}\n")
    assert read_available(proc, root) == 2 * GIB


def test_read_available_without_cgroup_files_is_the_host(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert read_available(tmp_path, tmp_path / "none") == 20 * GIB
    assert read_available(tmp_path / "none", tmp_path / "none") is None
