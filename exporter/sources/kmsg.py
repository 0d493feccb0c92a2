"""OOM kills from the kernel log (/dev/kmsg), read in a background thread.

The OOM killer logs each victim in ``__oom_kill_process`` and, rate-limited, a one-line
summary first in ``dump_oom_summary`` (torvalds/linux ``mm/oom_kill.c``; the same formats
from v5.15, Ubuntu 22.04's kernel, through v6.8 and the v6.11-v6.17 HWE kernels of 24.04,
and on this machine's 6.18)::

    <reason>: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB,
        shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd
    oom-kill:constraint=%s,nodemask=%*pbl[,cpuset=...,mems_allowed=...][,oom_memcg=...,
        task_memcg=...],task=%s,pid=%d,uid=%d

with ``<reason>`` "Out of memory", "Memory cgroup out of memory" or "Out of memory
(oom_kill_allocating_task)" (``out_of_memory``). ``%s`` in parentheses and after ``task=``
is the victim's name (``comm``): up to 15 bytes *the student chooses* (prctl, or writing
/proc/self/comm), e.g. ``a) UID:1109 (``. So the fields are read only where the name
cannot reach them: the pid from the fixed start of the kill line, the uid from the fixed
tail at the end of either line (anchored at the end: the name comes before it and cannot
make the digits after it). /dev/kmsg escapes non-printable bytes (``\\xNN``), so a name
cannot end a line either. A record counts only with facility 0, the kernel's own: anything
written to /dev/kmsg gets another facility (kernel/printk/printk.c ``devkmsg_write``: "we
enforce LOG_USER, to be able to reliably distinguish kernel-generated messages from
userspace-injected ones"). ``sources.host`` then checks the pid against the process table.

The exporter reads from the end of the log at start, so kills from before it started are
not counted again after a restart. Reading /dev/kmsg needs CAP_SYSLOG (root).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REASONS = (
    "Out of memory",
    "Memory cgroup out of memory",
    "Out of memory (oom_kill_allocating_task)",
)
KILLED = re.compile(
    rf"^(?:{'|'.join(map(re.escape, REASONS))}): Killed process (?P<pid>\d+) \((?P<rest>.*)$"
)
KILLED_TAIL = re.compile(
    r"\) total-vm:\d+kB, anon-rss:\d+kB, file-rss:\d+kB, shmem-rss:\d+kB, "
    r"UID:(?P<uid>\d+) pgtables:\d+kB oom_score_adj:-?\d+$"
)
SUMMARY = re.compile(r"^oom-kill:.*,pid=(?P<pid>\d+),uid=(?P<uid>\d+)$")
KERNEL_FACILITY = 0
RECENT_SUMMARIES = 64  # victims whose summary came before their kill line
WAIT_SECONDS = 0.5


@dataclass(frozen=True)
class OomKill:
    pid: int
    command: str  # the victim's own name: for a log line, never for attribution
    uid: int | None  # None: not in a form this parser knows


def record_message(record: str) -> str:
    """The message of one /dev/kmsg record ("prio,seq,usec,flags;message\\n KEY=v..."),
    "" unless the kernel itself logged it (facility 0; prio = facility * 8 + level)."""
    prefix, sep, rest = record.partition(";")
    prio = prefix.split(",", 1)[0]
    if not sep or not (prio.isascii() and prio.isdigit()) or int(prio) >> 3 != KERNEL_FACILITY:
        return ""
    return rest.split("\n", 1)[0]


def parse_oom_kill(message: str) -> OomKill | None:
    """A "Killed process" line: its pid, and its uid where the tail is as the kernel
    writes it (else None: the uid is not guessed from text after the name)."""
    match = KILLED.match(message)
    if match is None:
        return None
    rest = match.group("rest")
    tail = KILLED_TAIL.search(rest)
    if tail is None:
        return OomKill(int(match.group("pid")), rest[:15], None)
    return OomKill(int(match.group("pid")), rest[: tail.start()], int(tail.group("uid")))


def parse_oom_summary(message: str) -> tuple[int, int] | None:
    """(pid, uid) of an "oom-kill:" summary line."""
    match = SUMMARY.match(message)
    return (int(match.group("pid")), int(match.group("uid"))) if match else None


class KmsgWatcher:
    def __init__(self, path: Path = Path("/dev/kmsg")) -> None:
        self.path = path
        self._kills: list[OomKill] = []
        self._summaries: OrderedDict[int, int] = OrderedDict()  # pid -> uid
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Opens the log at its end; raises OSError where it cannot be read."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # an old kernel: read from where it is
            os.lseek(fd, 0, os.SEEK_END)
        self._thread = threading.Thread(target=self._run, args=(fd,), name="kmsg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * WAIT_SECONDS)

    def take(self) -> list[OomKill]:
        """The kills seen since the last call."""
        with self._lock:
            kills, self._kills = self._kills, []
        return kills

    def _read(self, message: str) -> None:
        summary = parse_oom_summary(message)
        if summary is not None:
            self._summaries[summary[0]] = summary[1]
            if len(self._summaries) > RECENT_SUMMARIES:
                self._summaries.popitem(last=False)
            return
        kill = parse_oom_kill(message)
        if kill is None:
            return
        uid = self._summaries.pop(kill.pid, None)
        if kill.uid is None and uid is not None:
            kill = OomKill(kill.pid, kill.command, uid)
        with self._lock:
            self._kills.append(kill)

    def _run(self, fd: int) -> None:
        # poll(), not select(): with the open-file limit raised, fd may be above 1024.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(WAIT_SECONDS * 1000):
                    continue
                try:
                    data = os.read(fd, 8192)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # records overwritten before we read them
                        log.info("kernel log overran; some OOM kills may be missed")
                        continue
                    log.warning("reading %s failed, OOM kills from it stop: %s", self.path, exc)
                    return
                if not data:
                    self._stop.wait(WAIT_SECONDS)  # a plain file at its end
                    continue
                for line in data.decode(errors="replace").splitlines():
                    self._read(record_message(line))
        finally:
            os.close(fd)
