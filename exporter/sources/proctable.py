"""The process table: one walk of /proc per cycle, shared by every collector that needs it.

Each cycle reads every process's ``stat`` (state, parent, CPU, memory). What a process is,
its uid, cgroup lines, the few environment variables the exporter reads, and its argv, is
read when the process (pid and start time) is first seen, and again when its name changes
(an exec: a new program may run as another account or in another environment) or while it
is younger than ``MAY_STILL_EXEC_SECONDS``: between fork and exec a process shows its
parent's argv, seconds apart on a loaded machine, and an exec need not change the name
(python starting python). A re-read gives a new ``ProcessIdentity`` object, so whoever
derives something from one knows when to derive it again. Each entry is judged by the
attribution rules (``sources.owners``) with the hub's current roster.

Two environment variables are the exception: once a read shows ``JUPYTERHUB_USER`` (the
hub's mark on a server and everything it starts; a process between fork and exec shows
its parent's, which for a server is systemd's or the hub's, without it) they are kept for
the process's life (pid and start time), through renames and execs. /proc/PID/environ is
the process's own memory: a server that overwrites that area in place (ctypes) and renames
itself would otherwise move its exported GPU (``dlcourse_user_gpu_assigned``) or its name.

Every read is bounded in size (``LIMITS``): a process's files are its owner's to make
large. A process that vanishes mid-read is left out of this cycle's table.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..model import (
    HUB_USER_VARIABLE,
    SESSION_NAME_VARIABLE,
    VISIBLE_DEVICES_VARIABLE,
    Evidence,
    ProcessEntry,
    ProcessIdentity,
    ProcessTable,
)
from ..untrusted import valid_text
from .base import Source
from .kubepods import pod_uid
from .owners import OwnerRules, account_name, environ_user, status_uid, unit_user
from .procfs import CLOCK_TICKS, ProcStat, parse_stat, parse_uptime, split_cmdline

# Bytes read at most from each file; the parts the exporter uses come first in each.
LIMITS = {
    "stat": 4096,
    "status": 16 * 1024,
    "cgroup": 16 * 1024,
    "cmdline": 64 * 1024,
    "environ": 256 * 1024,
}
# The only environment variables kept (each at most MAX_VARIABLE_CHARS): whose process
# it says it is, the GPU the hub assigned to a server, and a kernel's notebook. A variable
# a later rule needs is added here.
ENVIRON_VARIABLES = (HUB_USER_VARIABLE, VISIBLE_DEVICES_VARIABLE, SESSION_NAME_VARIABLE)
# Those kept for the process's life once JUPYTERHUB_USER was seen (the module docstring).
# A kernel's JPY_SESSION_NAME is not: its process shows the server's environment between
# fork and exec, and the variable only after the exec.
KEPT_VARIABLES = (HUB_USER_VARIABLE, VISIBLE_DEVICES_VARIABLE)
MAX_VARIABLE_CHARS = 1024
MAY_STILL_EXEC_SECONDS = 30.0


class Vanished(Exception):
    """The process ended while it was read."""


def read_bounded(path: str, limit: int, whole: bool = False) -> bytes:
    """Up to limit bytes of a /proc file, which may arrive in several reads; ``whole``:
    one read gives all of it (stat, a line far shorter than limit)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if whole:
                break
        return b"".join(chunks)
    finally:
        os.close(fd)


def environ_variables(raw: bytes, names: tuple[str, ...] = ENVIRON_VARIABLES) -> dict[str, str]:
    """The named variables of a NUL-separated /proc/<pid>/environ, as valid text."""
    wanted = {name.encode() + b"=": name for name in names}
    found = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        key = wanted.get(name + sep)
        if key is not None and key not in found:
            found[key] = valid_text(value[:MAX_VARIABLE_CHARS].decode(errors="replace"))
    return found


def read_stat(procfs: Path, pid: int) -> ProcStat:
    """/proc/<pid>/stat, parsed; raises Vanished if the process is gone."""
    try:
        text = read_bounded(f"{procfs}/{pid}/stat", LIMITS["stat"], whole=True).decode(
            errors="replace"
        )
        return parse_stat(text)
    except (OSError, ValueError) as exc:
        raise Vanished(pid) from exc


def read_identity(
    procfs: Path, pid: int, prefix: str, environ: Mapping[str, str] | None = None
) -> ProcessIdentity:
    """What /proc/<pid> says the process is; raises Vanished if it ended meanwhile.
    ``environ``: the variables kept from an earlier read; the ``KEPT_VARIABLES`` come from
    it, not from this read."""

    def read(name: str, optional: bool = False) -> bytes:
        try:
            return read_bounded(f"{procfs}/{pid}/{name}", LIMITS[name])
        except OSError as exc:
            # Not root, other users' environ is closed (EACCES): the uid still tells.
            if optional:
                return b""
            raise Vanished(pid) from exc

    cgroup = tuple(read("cgroup").decode(errors="replace").splitlines())
    uid = status_uid(read("status").decode(errors="replace"))
    fresh = environ_variables(read("environ", optional=True))
    if environ is not None:
        fresh = {name: value for name, value in fresh.items() if name not in KEPT_VARIABLES}
        fresh.update((name, environ[name]) for name in KEPT_VARIABLES if name in environ)
    environ = fresh
    argv = tuple(split_cmdline(read("cmdline", optional=True)))
    account = account_name(uid) if uid is not None else None
    evidence = Evidence(unit_user(cgroup, prefix), account, environ_user(environ), pod_uid(cgroup))
    return ProcessIdentity(uid, cgroup, environ, argv, evidence)


class ProcessTableSource(Source):
    """Walks /proc once per cycle; remembers each process's identity while it lives."""

    name = "proc"

    def __init__(self, owners: OwnerRules, procfs: Path = Path("/proc"), interval: float = 5.0):
        self.owners = owners
        self.procfs = procfs
        self.interval = interval
        # (pid, start time) -> (comm when read, identity)
        self._known: dict[tuple[int, int], tuple[str, ProcessIdentity]] = {}

    def poll(self) -> ProcessTable:
        walk_started = time.monotonic()
        # Processes started after this may not have exec'd yet (a fixture tree may have no
        # uptime: then none is taken for young).
        uptime = self._uptime()
        settled_before = math.inf if uptime is None else uptime - MAY_STILL_EXEC_SECONDS
        entries: dict[int, ProcessEntry] = {}
        known: dict[tuple[int, int], tuple[str, ProcessIdentity]] = {}
        for name in os.listdir(self.procfs):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                stat = read_stat(self.procfs, pid)
                key = (pid, stat.starttime_ticks)
                comm, identity = self._known.get(key) or ("", None)
                young = stat.starttime_ticks / CLOCK_TICKS > settled_before
                if identity is None or comm != stat.comm or young:
                    kept = (
                        identity.environ
                        if identity and HUB_USER_VARIABLE in identity.environ
                        else None
                    )
                    identity = read_identity(self.procfs, pid, self.owners.prefix, kept)
            except Vanished:
                continue
            known[key] = (stat.comm, identity)
            entries[pid] = ProcessEntry(
                pid=pid,
                start_ticks=stat.starttime_ticks,
                ppid=stat.ppid,
                state=stat.state,
                cpu_seconds=stat.cpu_seconds,
                rss_bytes=stat.rss_bytes,
                identity=identity,
                owner=self.owners.judge(identity.evidence),
            )
        self._known = known
        return ProcessTable(entries, walk_started)

    def _uptime(self) -> float | None:
        try:
            return parse_uptime(read_bounded(f"{self.procfs}/uptime", 256).decode())
        except (OSError, ValueError, IndexError):
            return None
