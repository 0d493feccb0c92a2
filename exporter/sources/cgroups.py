"""A hub user's own cgroup (TLJH: ``jupyter-<name>.service``) and what it accounts.

Works on cgroup v2 (unified), v1 and the hybrid layout where v1 controllers sit beside a
``unified`` v2 mount. Each field comes from the first hierarchy that has it:

| field        | v2                     | v1                                  |
|--------------|------------------------|-------------------------------------|
| memory used  | memory.current         | memory/memory.usage_in_bytes        |
| memory limit | memory.max ("max")     | memory/memory.limit_in_bytes (huge) |
| OOM kills    | memory.events oom_kill | memory/memory.oom_control oom_kill  |
| CPU          | cpu.stat usage_usec    | cpuacct/cpuacct.usage (ns)          |

Memory used is what the kernel charges against the limit (it includes page cache).
The parsers are pure; ``CgroupReader`` does the reads under a root given to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# v1 reports "no limit" as the page counter's maximum, rounded to pages (~ 2**63).
V1_NO_LIMIT = 2**62


@dataclass(frozen=True)
class CgroupUsage:
    memory_used_bytes: int | None = None
    memory_limit_bytes: int | None = None
    oom_kills: int | None = None
    cpu_seconds: float | None = None


def unit_cgroup(path: str, prefix: str, user: str) -> str | None:
    """The ``<prefix><user>.service`` cgroup that path is in (itself or an ancestor)."""
    match = re.search(rf"^(.*?/{re.escape(prefix + user)}\.service)(?:/|$)", path)
    return match.group(1) if match else None


def parse_keyed(text: str) -> dict[str, int]:
    """Flat "key value" files: memory.events, cpu.stat, memory.oom_control."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def parse_v2_limit(text: str) -> int | None:
    value = text.strip()
    return None if value == "max" else int(value)


def parse_v1_limit(text: str) -> int | None:
    value = int(text.strip())
    return None if value >= V1_NO_LIMIT else value


@dataclass(frozen=True)
class UnitCgroup:
    """Where one user's unit lives in each hierarchy (absolute directories)."""

    v2: Path | None
    memory_v1: Path | None
    cpuacct_v1: Path | None

    def exists(self) -> bool:
        return any(d is not None and d.is_dir() for d in (self.v2, self.memory_v1, self.cpuacct_v1))


class CgroupReader:
    def __init__(self, cgroupfs: Path = Path("/sys/fs/cgroup")) -> None:
        self.cgroupfs = cgroupfs

    def v2_root(self) -> Path:
        # Hybrid layout: v2 is mounted at <root>/unified; pure v2: at the root itself.
        unified = self.cgroupfs / "unified"
        return unified if (unified / "cgroup.controllers").exists() else self.cgroupfs

    def locate(self, proc_cgroup: dict[str, str], prefix: str, user: str) -> UnitCgroup | None:
        """The user's unit cgroup from a process's /proc/<pid>/cgroup, None if not in one."""
        v2 = memory = cpuacct = None
        for controllers, path in proc_cgroup.items():
            unit = unit_cgroup(path, prefix, user)
            if unit is None:
                continue
            names = controllers.split(",")
            if controllers == "":
                v2 = self.v2_root() / unit.lstrip("/")
            if "memory" in names:
                memory = self._v1_dir(controllers, "memory") / unit.lstrip("/")
            if "cpuacct" in names:
                cpuacct = self._v1_dir(controllers, "cpuacct") / unit.lstrip("/")
        if v2 is None and memory is None and cpuacct is None:
            return None
        return UnitCgroup(v2, memory, cpuacct)

    def _v1_dir(self, controllers: str, controller: str) -> Path:
        # systemd mounts e.g. "cpu,cpuacct" and links "cpuacct" to it; plain mounts use one name.
        joined = self.cgroupfs / controllers
        return joined if joined.is_dir() else self.cgroupfs / controller

    def usage(self, unit: UnitCgroup) -> CgroupUsage:
        used = limit = oom = None
        cpu = None
        if unit.v2 is not None:
            used = _read(unit.v2 / "memory.current", int)
            limit_text = _read(unit.v2 / "memory.max", str)
            limit = parse_v2_limit(limit_text) if limit_text is not None else None
            events = _read(unit.v2 / "memory.events", parse_keyed)
            oom = events.get("oom_kill") if events else None
            stat = _read(unit.v2 / "cpu.stat", parse_keyed)
            if stat and "usage_usec" in stat:
                cpu = stat["usage_usec"] / 1e6
        if unit.memory_v1 is not None:
            if used is None:
                used = _read(unit.memory_v1 / "memory.usage_in_bytes", int)
            if limit is None:
                limit = _read(unit.memory_v1 / "memory.limit_in_bytes", parse_v1_limit)
            if oom is None:
                control = _read(unit.memory_v1 / "memory.oom_control", parse_keyed)
                oom = control.get("oom_kill") if control else None
        if unit.cpuacct_v1 is not None and cpu is None:
            nanoseconds = _read(unit.cpuacct_v1 / "cpuacct.usage", int)
            cpu = nanoseconds / 1e9 if nanoseconds is not None else None
        return CgroupUsage(used, limit, oom, cpu)


def _read(path: Path, parse):  # type: ignore[no-untyped-def]
    """The parsed file, or None when it is absent (controller not enabled there)."""
    try:
        return parse(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
