"""A /proc fixture tree: processes with exactly the files and values a test says.

For what a real /proc cannot be made to show on demand: a unit path under /system.slice,
a process between fork and exec, a uid without an account. The exporter reads such a tree
with ``--path.procfs``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def stat_line(
    pid: int,
    comm: str = "python",
    state: str = "S",
    ppid: int = 1,
    utime: int = 0,
    stime: int = 0,
    start_ticks: int = 0,
    rss_pages: int = 0,
) -> str:
    """A /proc/<pid>/stat line (proc(5)): field N after the name is fields[N - 3]."""
    fields = ["0"] * 50
    fields[0], fields[1] = state, str(ppid)
    fields[11], fields[12] = str(utime), str(stime)
    fields[19], fields[21] = str(start_ticks), str(rss_pages)
    return f"{pid} ({comm}) {' '.join(fields)}\n"


def write_process(
    procfs: Path,
    pid: int,
    *,
    uid: int | None = None,
    cgroup: str = "0::/\n",
    environ: bytes = b"",
    argv: Sequence[str] = ("python",),
    **stat: object,
) -> Path:
    """/proc/<pid> with stat, status (uid: this account's by default), cgroup, environ and
    cmdline; ``stat`` takes stat_line's fields. Written again, it replaces them."""
    uid = os.getuid() if uid is None else uid
    d = procfs / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(stat_line(pid, **stat))  # type: ignore[arg-type]
    (d / "status").write_text(
        f"Name:\t{stat.get('comm', 'python')}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
    )
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(environ)
    (d / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in argv))
    return d


def write_uptime(procfs: Path, seconds: float) -> None:
    procfs.mkdir(parents=True, exist_ok=True)
    (procfs / "uptime").write_text(f"{seconds:.2f} 0.00\n")
