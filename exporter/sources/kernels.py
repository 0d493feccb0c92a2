"""Finds notebook kernel processes and tells how each one ended.

A kernel is a process started with a ``kernel-*.json`` connection file in its argv (see
``procfs.kernel_connection_file``), found in each cycle's process table
(``sources.proctable``) or as it starts; it counts for the user ``sources.owners``
attributes it to, judged again at every count (the hub's user list changes) and when it
ends. Exits are seen through the netlink proc connector (exact wait status of every
process) or, where that is unavailable, by polling the watched kernels' /proc/<pid>/stat a
few times a second.

Why an exit is or is not a crash (``classify``):
- exit code 0: a shutdown or restart asked for through jupyter_client (shutdown_request:
  the kernel exits by itself). Not a crash.
- killed by SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL...: the kernel died of its own fault.
  Always a crash, with that signal.
- a non-zero exit code: a crash, signal "exit".
- killed by a stop signal (SIGTERM, SIGKILL, SIGHUP, SIGINT) is a crash, with two
  exceptions judged ``GRACE_SECONDS`` after the exit, when the server has had time to react:
  * its parent (the Jupyter server) is gone too: the whole server was stopped (systemd
    sends SIGTERM to every process of ``jupyter-<name>.service`` when the hub stops it);
  * its connection file is gone: jupyter_client removes it after a *shutdown* (not after a
    restart, nor after a crash, which its restarter restarts with the same file), so this
    was a requested shutdown that the kernel ignored for ``shutdown_wait_time`` (5 s) and
    jupyter_client escalated to SIGTERM, then SIGKILL.
  A user-requested *restart* of a kernel that ignores the request for 5 s also ends in
  SIGTERM/SIGKILL and keeps the file: it counts as a crash (the kernel was hung; nothing
  outside jupyter_client can tell the two apart).

Each snapshot also lists the students' running kernels and the latest crashes, for
``sources.students`` to tell each student what their kernels hold and why one died.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..model import (
    SESSION_NAME_VARIABLE,
    Evidence,
    KernelCrash,
    KernelsSnapshot,
    ProcessEntry,
    ProcessIdentity,
    ProcessTable,
    RunningKernel,
)
from ..untrusted import log_text, shown_text
from . import procfs as parse
from .base import Source
from .owners import OwnerRules
from .proc_events import ProcEventListener
from .proctable import LIMITS, Vanished, read_bounded, read_identity, read_stat

log = logging.getLogger(__name__)

GRACE_SECONDS = 3.0
POLL_SECONDS = 0.25  # fallback: how often watched kernels' /proc/<pid>/stat is read
STOP_SIGNALS = frozenset({"SIGTERM", "SIGKILL", "SIGHUP", "SIGINT"})
UNKNOWN = None  # exit status of a kernel that vanished before it was seen as a zombie
MAX_NOTEBOOK_CHARS = 200
RECENT_CRASHES = 256  # kept for sources.students, which reads them every cycle


@dataclass(frozen=True)
class KernelProcess:
    pid: int
    starttime: int
    evidence: Evidence  # who owns it, as /proc told when it was found
    connection_file: str
    ppid: int
    parent_starttime: int | None
    uid: int | None = None
    notebook: str = ""  # notebook_name: shown to its student and the staff only
    found_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class PendingExit:
    kernel: KernelProcess
    status: int | None
    at: float
    ended_at: float = field(default_factory=time.time)  # unix time, for people


def notebook_name(environ: Mapping[str, str]) -> str:
    """The notebook a kernel was started for: the file name in its JPY_SESSION_NAME, which
    jupyter_server sets in every kernel's environment (SessionManager.get_kernel_env,
    jupyter_server/services/sessions/sessionmanager.py: the session's path, joined to the
    kernel's working folder when a name is given). The student's own text: kept short and
    shown as text; "" where it is missing (a kernel started another way)."""
    path = environ.get(SESSION_NAME_VARIABLE, "")
    return shown_text(path.rstrip("/").rpartition("/")[2], MAX_NOTEBOOK_CHARS)


def classify(status: int | None, parent_alive: bool, connection_file_exists: bool) -> str:
    """'clean', 'server-stopped', 'shutdown', 'unknown' or a crash reason (a signal or 'exit')."""
    reason = "unknown" if status is UNKNOWN else parse.exit_reason(status)
    if reason == "ok":
        return "clean"
    external = reason in STOP_SIGNALS or reason in ("unknown", "exit")
    if external and not parent_alive:
        return "server-stopped"
    if (reason in STOP_SIGNALS or reason == "unknown") and not connection_file_exists:
        return "shutdown"
    return reason


@dataclass
class _State:
    watched: dict[int, KernelProcess] = field(default_factory=dict)
    pending: list[PendingExit] = field(default_factory=list)
    crashes: Counter[tuple[str, str]] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    last_seen: dict[str, float] = field(default_factory=dict)  # user -> last kernel running
    ended: set[tuple[int, int]] = field(default_factory=set)  # (pid, starttime) seen exiting
    recent: deque[KernelCrash] = field(default_factory=lambda: deque(maxlen=RECENT_CRASHES))
    crash_count: int = 0


class KernelTracker(Source):
    """Kernels of the table, their exits and how they ended; its threads start with the
    first poll."""

    name = "kernels"
    needs = ("proc",)

    def __init__(
        self,
        owners: OwnerRules,
        procfs: Path = Path("/proc"),
        exit_events: str = "auto",
        interval: float = 5.0,
        grace: float = GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owners = owners
        self.procfs = procfs
        self.interval = interval
        self.grace = grace
        self.clock = clock
        self.mode = "poll"
        self._wanted = exit_events
        self._state = _State()
        self._lock = threading.Lock()
        # (pid, starttime) -> the identity judged, and whether it is a kernel
        self._seen: dict[tuple[int, int], tuple[ProcessIdentity, KernelProcess | None]] = {}
        self._listener: ProcEventListener | None = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = False

    def poll(self, table: ProcessTable) -> KernelsSnapshot:
        self.start()
        self.scan(table)
        self.settle(table)
        return self.snapshot()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._wanted == "auto":
            listener = ProcEventListener(self._on_exec, self._on_exit, self._on_lost)
            try:
                listener.start()
            except OSError as exc:
                log.info(
                    "proc connector unavailable (%s): polling /proc for kernel exits, "
                    "which cannot always tell how a kernel died",
                    exc,
                )
            else:
                self._listener = listener
                self.mode = "netlink"
                return
        self._start_poller()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.stop()
        if self._poller is not None:
            self._poller.join(timeout=2 * POLL_SECONDS)

    def _start_poller(self) -> None:
        self.mode = "poll"
        self._poller = threading.Thread(target=self._poll_loop, name="kernel-exits", daemon=True)
        self._poller.start()

    # -- finding kernels --------------------------------------------------------------

    def _identify(self, entry: ProcessEntry, table: ProcessTable) -> KernelProcess | None:
        """The kernel this process is, or None; judged again whenever the table read the
        process's identity again (after an exec, or while it is young enough to exec)."""
        cached = self._seen.get(entry.key)
        if cached is None or cached[0] is not entry.identity:
            parent = table.get(entry.ppid)
            kernel = self._kernel(
                entry.pid,
                entry.start_ticks,
                entry.ppid,
                entry.identity,
                parent.start_ticks if parent else None,
            )
            cached = self._seen[entry.key] = (entry.identity, kernel)
        return cached[1]

    def _kernel(
        self,
        pid: int,
        starttime: int,
        ppid: int,
        identity: ProcessIdentity,
        parent_starttime: int | None,
    ) -> KernelProcess | None:
        connection_file = parse.kernel_connection_file(list(identity.argv))
        if connection_file is None:
            return None
        return KernelProcess(
            pid=pid,
            starttime=starttime,
            evidence=identity.evidence,
            connection_file=self._absolute(pid, connection_file),
            ppid=ppid,
            parent_starttime=parent_starttime,
            uid=identity.uid,
            notebook=notebook_name(identity.environ),
        )

    def _absolute(self, pid: int, path: str) -> str:
        if os.path.isabs(path):
            return path
        try:
            return os.path.join(os.readlink(self.procfs / str(pid) / "cwd"), path)
        except OSError:
            return path

    def scan(self, table: ProcessTable) -> None:
        """Finds every running kernel; the source of truth for the running count."""
        listener = self._listener
        if listener is not None:
            listener.drain()  # exits before the walk are known before absences are judged
        found: dict[int, KernelProcess] = {}
        live_keys = set()
        for entry in table:
            if entry.state == "Z":
                continue
            live_keys.add(entry.key)
            kernel = self._identify(entry, table)
            if kernel is not None:
                found[entry.pid] = kernel
        self._seen = {key: value for key, value in self._seen.items() if key in live_keys}
        # A wrapper that runs the kernel as its child has the same connection file: count
        # the outermost process only, the one jupyter_client started and watches.
        outermost = {
            pid: kernel
            for pid, kernel in found.items()
            if not (
                kernel.ppid in found
                and found[kernel.ppid].connection_file == kernel.connection_file
            )
        }
        with self._lock:
            # Exits seen while this scan ran must not bring their kernels back.
            self._state.ended &= live_keys
            for pid, kernel in outermost.items():
                if (pid, kernel.starttime) in self._state.ended:
                    continue
                self._state.watched.setdefault(pid, kernel)
            if self.mode == "netlink":
                # Exits are reported as they happen; a watched kernel missing here had its
                # event dropped (socket overflow): it ended, but how is unknown. Only one
                # found before the walk: one exec'd during it may be behind its position.
                for pid, kernel in list(self._state.watched.items()):
                    if (
                        kernel.found_at < table.walk_started
                        and outermost.get(pid) != kernel
                        and (pid, kernel.starttime) not in live_keys
                    ):
                        self._exited_locked(pid, UNKNOWN)

    # -- exit events ------------------------------------------------------------------

    def _on_exec(self, pid: int) -> None:
        """A process started a new program: if it is a kernel, watch it from now on."""
        try:
            argv = parse.split_cmdline(
                read_bounded(f"{self.procfs}/{pid}/cmdline", LIMITS["cmdline"])
            )
            if parse.kernel_connection_file(argv) is None:
                return  # the common case: one read for every exec on the machine
            stat = read_stat(self.procfs, pid)
            identity = read_identity(self.procfs, pid, self.owners.prefix)
        except (OSError, Vanished):
            return
        try:
            parent_starttime: int | None = read_stat(self.procfs, stat.ppid).starttime_ticks
        except Vanished:
            parent_starttime = None
        kernel = self._kernel(
            pid,
            stat.starttime_ticks,
            stat.ppid,
            identity,
            parent_starttime,
        )
        if kernel is None:
            return
        with self._lock:
            if (pid, kernel.starttime) in self._state.ended:
                return
            parent = self._state.watched.get(kernel.ppid)
            if parent is not None and parent.connection_file == kernel.connection_file:
                return  # a child of a watched wrapper
            self._state.watched[pid] = kernel

    def _on_exit(self, pid: int, status: int) -> None:
        if pid not in self._state.watched:
            return  # nearly every exit on the machine: no lock taken for it
        with self._lock:
            if pid in self._state.watched:
                self._exited_locked(pid, status)

    def _on_lost(self, fatal: bool) -> None:
        if fatal and not self._stop.is_set():
            self._listener = None
            self._start_poller()

    def _user(self, kernel: KernelProcess) -> str | None:
        found = self.owners.judge(kernel.evidence)
        return found.user if found else None

    def _exited_locked(self, pid: int, status: int | None) -> None:
        kernel = self._state.watched.pop(pid)
        self._state.ended.add((pid, kernel.starttime))
        self._state.pending.append(PendingExit(kernel, status, self.clock()))

    def _poll_loop(self) -> None:
        """Fallback: watch each known kernel's stat; catch it as a zombie to read its status."""
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                watched = list(self._state.watched.values())
            for kernel in watched:
                try:
                    stat: parse.ProcStat | None = read_stat(self.procfs, kernel.pid)
                except Vanished:
                    stat = None
                if stat is not None and stat.starttime_ticks == kernel.starttime:
                    if stat.state != "Z" or stat.exit_code is None:
                        continue
                    status: int | None = stat.exit_code
                else:
                    status = UNKNOWN  # already reaped by its parent: how it ended is lost
                with self._lock:
                    if self._state.watched.get(kernel.pid) == kernel:
                        self._exited_locked(kernel.pid, status)

    # -- judging exits ----------------------------------------------------------------

    @staticmethod
    def _parent_alive(kernel: KernelProcess, table: ProcessTable) -> bool:
        parent = table.get(kernel.ppid)
        return (
            parent is not None
            and parent.state != "Z"
            and (kernel.parent_starttime is None or parent.start_ticks == kernel.parent_starttime)
        )

    def settle(self, table: ProcessTable) -> None:
        """Judges the exits older than the grace period."""
        now = self.clock()
        with self._lock:
            due = [p for p in self._state.pending if now - p.at >= self.grace]
            self._state.pending = [p for p in self._state.pending if now - p.at < self.grace]
        for exit_ in due:
            kernel = exit_.kernel
            file_exists = not os.path.isabs(kernel.connection_file) or os.path.exists(
                kernel.connection_file
            )
            outcome = classify(exit_.status, self._parent_alive(kernel, table), file_exists)
            user = self._user(kernel)
            log.debug("kernel pid %d of %s ended: %s", kernel.pid, log_text(user), outcome)
            if user is None:
                continue  # no student's kernel: not counted
            with self._lock:
                self._state.last_seen[user] = self.clock()
                if outcome == "unknown":
                    self._state.unknown[user] += 1
                elif outcome not in ("clean", "server-stopped", "shutdown"):
                    self._state.crashes[(user, outcome)] += 1
                    self._record_crash_locked(user, exit_, outcome)
                    log.info("kernel of %s crashed: %s", log_text(user), outcome)

    def _record_crash_locked(self, user: str, exit_: PendingExit, outcome: str) -> None:
        assert exit_.status is not None  # an unknown status is never judged a crash
        self._state.crash_count += 1
        self._state.recent.append(
            KernelCrash(
                self._state.crash_count,
                self._running(user, exit_.kernel),
                outcome,
                exit_.status,
                exit_.ended_at,
            )
        )

    @staticmethod
    def _running(user: str, kernel: KernelProcess) -> RunningKernel:
        return RunningKernel(
            user, kernel.pid, kernel.starttime, kernel.connection_file, kernel.uid, kernel.notebook
        )

    def snapshot(self) -> KernelsSnapshot:
        with self._lock:
            kernels = tuple(
                self._running(user, k)
                for k in self._state.watched.values()
                if (user := self._user(k)) is not None
            )
            running = Counter(kernel.user for kernel in kernels)
            self._state.last_seen.update(dict.fromkeys(running, self.clock()))
            self._forget_users_locked()
            return KernelsSnapshot(
                running=dict(running),
                crashes=dict(self._state.crashes),
                unknown_exits=dict(self._state.unknown),
                users=frozenset(self._state.last_seen),
                exit_events=self.mode,
                kernels=kernels,
                recent_crashes=tuple(self._state.recent),
            )

    def _forget_users_locked(self) -> None:
        """Drops users without kernels who no longer count (``roster.keep_user``)."""
        now, state = self.clock(), self._state
        keep = {u for u, seen in state.last_seen.items() if self.owners.keep(u, seen, now)}
        state.last_seen = {user: state.last_seen[user] for user in keep}
        state.crashes = Counter({key: n for key, n in state.crashes.items() if key[0] in keep})
        state.unknown = Counter({user: n for user, n in state.unknown.items() if user in keep})
