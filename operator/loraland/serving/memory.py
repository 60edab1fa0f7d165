"""How much memory the server may still use: the host's, or its cgroup's when that is less.

A pod with a memory limit sees the HOST in ``/proc/meminfo`` (a 3 GiB pod on a 24 GiB
node reads about 20 GiB available), so tiers sized from it alone get the pod killed. The
limit lives in the cgroup: v2 ``memory.max`` (``"max"``: none), v1
``memory.limit_in_bytes`` (a huge page-rounded 2^63 when unset). What is left under it
is the limit minus the working set, as the kubelet counts it: usage less the inactive
page cache, which the kernel reclaims before it kills anything.

The parsing and the arithmetic are pure functions fed file contents; :func:`read_available`
is the small edge that reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Limits at or above this mean "no limit" (v1 writes 2^63 rounded down to a page).
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class CgroupMemory:
    """One cgroup's memory files, parsed: ``limit`` None when it sets none."""

    limit: int | None
    usage: int
    inactive_file: int = 0

    @property
    def headroom(self) -> int | None:
        if self.limit is None:
            return None
        working_set = max(0, self.usage - self.inactive_file)
        return max(0, self.limit - working_set)


def parse_meminfo_available(text: str) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo``, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def parse_limit(text: str) -> int | None:
    """A ``memory.max`` / ``memory.limit_in_bytes`` value: None for "max" or a huge one."""
    value = text.strip()
    if not value or value == "max":
        return None
    limit = int(value)
    return None if limit >= _UNLIMITED else limit


def parse_inactive_file(stat: str) -> int:
    """Inactive page cache from ``memory.stat`` (v2 ``inactive_file``, v1 ``total_...``)."""
    found: dict[str, int] = {}
    for line in stat.splitlines():
        key, _, value = line.partition(" ")
        if key in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
            found[key] = int(value)
    # v1 has both: total_ counts the whole subtree, which is what the limit applies to.
    return found.get("total_inactive_file", found.get("inactive_file", 0))


def available_memory(host_available: int | None, cgroups: list[CgroupMemory]) -> int | None:
    """The least of what the host has available and every cgroup's headroom."""
    candidates = [c.headroom for c in cgroups]
    bounds = [v for v in (host_available, *candidates) if v is not None]
    return min(bounds) if bounds else None


def cgroup_dirs(self_cgroup: str, root: Path) -> list[Path]:
    """Directories whose memory files bound this process, from ``/proc/self/cgroup``:
    its own cgroup and every ancestor, under the v2 mount or v1 ``memory`` controller.

    In a container with a cgroup namespace the path is ``/`` and the mount root IS the
    container's cgroup, so the root itself is always a candidate.
    """
    dirs: list[Path] = []
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            base = root
        elif "memory" in controllers.split(","):
            base = root / "memory"
        else:
            continue
        current = base / path.strip("/") if path.strip("/") else base
        while True:
            if current not in dirs:
                dirs.append(current)
            if current == base:
                break
            current = current.parent
    return dirs


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def read_cgroup(directory: Path) -> CgroupMemory | None:
    """The memory files of one cgroup directory (v2 or v1), or None when it has none."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory.limit_in_bytes", "memory.usage_in_bytes"),
    ):
        limit_text = _read(directory / limit_file)
        usage_text = _read(directory / usage_file)
        if limit_text is None or usage_text is None:
            continue
        try:
            limit, usage = parse_limit(limit_text), int(usage_text.strip())
        except ValueError:
            return None
        stat = _read(directory / "memory.stat") or ""
        return CgroupMemory(limit=limit, usage=usage, inactive_file=parse_inactive_file(stat))
    return None


def read_available(
    proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """Bytes this process may still allocate: the host's MemAvailable, bounded by the
    headroom of every cgroup above it that has a memory limit. None when unknown."""
    meminfo = _read(proc / "meminfo")
    host = parse_meminfo_available(meminfo) if meminfo is not None else None
    self_cgroup = _read(proc / "self" / "cgroup") or ""
    cgroups = [
        c for d in cgroup_dirs(self_cgroup, cgroup_root) if (c := read_cgroup(d)) is not None
    ]
    return available_memory(host, cgroups)
