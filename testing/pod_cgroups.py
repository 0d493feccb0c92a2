"""Processes in cgroups named as a kubelet names pods', for the Kubernetes attribution tests.

Where root may make cgroups (CI runs as root), each process is a real ``sleep`` moved into
a real cgroup below ``dlcourse-test-<random>/`` of a hierarchy this machine mounts (cgroup
v1 ``memory`` or ``pids``, or v2), so the exporter reads the kubelet's path forms from the
real /proc/<pid>/cgroup. Elsewhere each one is an entry of a /proc fixture tree
(``testing.procfs``) with the same cgroup line, read with ``--path.procfs``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

from .procfs import write_process

CGROUPFS = Path("/sys/fs/cgroup")


def hierarchies() -> dict[str, tuple[Path, str]]:
    """Mounted hierarchies by name ("memory", "pids", "v2"): (mount point, cgroup line
    prefix)."""
    found = {}
    for name, number in (("memory", 4), ("pids", 8)):
        if (CGROUPFS / name / "cgroup.procs").exists():
            found[name] = (CGROUPFS / name, f"{number}:{name}:")
    for v2 in (CGROUPFS / "unified", CGROUPFS):
        if (v2 / "cgroup.controllers").exists():
            found["v2"] = (v2, "0::")
            break
    return found


class PodProcesses:
    """``start(hierarchy, path)`` gives the pid of a process in cgroup ``path`` (a kubelet
    form, e.g. ``kubepods/burstable/pod<uid>/<container id>``)."""

    def __init__(self, procfs: Path) -> None:
        self.root = f"dlcourse-test-{uuid.uuid4().hex[:8]}"
        self.available = hierarchies()
        self.real = os.geteuid() == 0 and self._writable()
        self.procfs = procfs  # used only when not real
        self.processes: list[subprocess.Popen] = []
        self.made: list[Path] = []
        self._next_fake_pid = 4_000_000

    @property
    def exporter_args(self) -> list[str]:
        return [] if self.real else [f"--path.procfs={self.procfs}"]

    def start(self, hierarchy: str, path: str, env: dict[str, str] | None = None) -> int:
        mount, prefix = self.available.get(hierarchy) or next(iter(self.available.values()))
        if not self.real:
            self._next_fake_pid += 1
            pid = self._next_fake_pid
            environ = b"".join(f"{k}={v}\0".encode() for k, v in (env or {}).items())
            cgroup = f"{prefix}/{self.root}/{path}\n"
            write_process(self.procfs, pid, comm="python", cgroup=cgroup, environ=environ)
            return pid
        process = subprocess.Popen(["sleep", "600"], env={"PATH": "/usr/bin:/bin", **(env or {})})
        self.processes.append(process)
        directory = mount / self.root / path
        for made in reversed([directory, *directory.parents]):
            if made.is_relative_to(mount / self.root) and not made.exists():
                made.mkdir()
                self.made.append(made)
        (directory / "cgroup.procs").write_text(str(process.pid))
        return process.pid

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        for directory in reversed(self.made):  # children before parents
            with contextlib.suppress(OSError):  # still busy: it stays, empty and harmless
                directory.rmdir()

    def _writable(self) -> bool:
        try:
            for mount, _ in self.available.values():
                (mount / self.root).mkdir()
                (mount / self.root).rmdir()
        except OSError:
            return False
        return bool(self.available)
