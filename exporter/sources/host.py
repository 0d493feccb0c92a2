"""CPU, memory and OOM kills per hub user: from the user's cgroup, else from /proc.

Who is reported: students only, i.e. owners of processes attributed by ``sources.owners``
(their systemd unit, their own account, ``JUPYTERHUB_USER`` where the account vouches for
it; with a hub, its users only). Root, daemons and the lecturer's own shell are left out,
so the label set stays as large as the class. A user stays reported (zeros included) while
``roster.keep_user`` keeps them, so counters do not vanish while they matter.

Counters are kept by the exporter and only ever grow: each poll adds the increase of the
chosen source (the unit cgroup where one is found, else /proc), and a cgroup recreated
with a lower value counts from zero again. /proc sums miss CPU a process used after the
last poll before it exited, and processes that live shorter than one poll interval.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..untrusted import log_text
from . import procfs as parse
from .cgroups import CgroupReader, CgroupUsage, UnitCgroup, parse_proc_cgroup
from .kmsg import KmsgWatcher
from .owners import Evidence, OwnerResolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserHost:
    user: str
    cpu_seconds: float
    memory_used_bytes: int
    memory_limit_bytes: int | None
    oom_kills: int
    source: str  # "cgroup" or "proc"


@dataclass
class _Seen:
    evidence: Evidence | None  # judged again each poll: the hub's user list changes
    cpu_seconds: float = 0.0


@dataclass
class _Totals:
    cpu: Counter[str] = field(default_factory=Counter)
    oom: Counter[str] = field(default_factory=Counter)
    cgroup_cpu: dict[Path, float] = field(default_factory=dict)
    cgroup_oom: dict[Path, int] = field(default_factory=dict)


def increase(previous: float | None, current: float) -> float:
    """What a counter grew by; a lower value means it was recreated and counts from 0."""
    if previous is None or current < previous:
        return current
    return current - previous


class HostReader:
    def __init__(
        self,
        owners: OwnerResolver,
        procfs: Path = Path("/proc"),
        cgroupfs: Path = Path("/sys/fs/cgroup"),
        kmsg: Path | None = Path("/dev/kmsg"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owners = owners
        self.clock = clock
        self.procfs = procfs
        self.cgroups = CgroupReader(cgroupfs)
        self.kmsg_path = kmsg
        self.kmsg: KmsgWatcher | None = None
        self._kmsg_tried = False
        self._seen: dict[tuple[int, int], _Seen] = {}
        self._recent: dict[int, _Seen] = {}  # this scan's and the last one's, by pid
        self._units: dict[str, UnitCgroup] = {}
        self._last_seen: dict[str, float] = {}  # user -> last poll with a process of theirs
        self._totals = _Totals()

    def close(self) -> None:
        if self.kmsg is not None:
            self.kmsg.stop()

    def _start_kmsg(self) -> None:
        self._kmsg_tried = True
        if self.kmsg_path is None:
            return
        watcher = KmsgWatcher(self.kmsg_path)
        try:
            watcher.start()
        except OSError as exc:
            log.info(
                "kernel log %s unreadable (%s): OOM kills only from cgroups",
                self.kmsg_path,
                exc.strerror or exc,
            )
            return
        self.kmsg = watcher

    def read(self) -> tuple[UserHost, ...]:
        if not self._kmsg_tried:
            self._start_kmsg()
        cpu_increase: Counter[str] = Counter()
        rss: Counter[str] = Counter()
        seen: dict[tuple[int, int], _Seen] = {}
        for entry in os.scandir(self.procfs):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = parse.parse_stat(
                    (self.procfs / entry.name / "stat").read_text(errors="replace")
                )
            except (OSError, ValueError):
                continue  # vanished
            key = (pid, stat.starttime_ticks)
            known = self._seen.get(key) or _Seen(self.owners.evidence(pid))
            seen[key] = known
            user = self._student(known.evidence)
            if user is None:
                continue
            cpu_increase[user] += increase(known.cpu_seconds or None, stat.cpu_seconds)
            known.cpu_seconds = stat.cpu_seconds
            rss[user] += stat.rss_bytes
            self._last_seen[user] = self.clock()
            if user not in self._units:
                self._locate_unit(pid, user)
        self._recent = {pid: s for (pid, _), s in [*self._seen.items(), *seen.items()]}
        self._seen = seen
        return tuple(self._per_user(cpu_increase, rss))

    def _student(self, evidence: Evidence | None) -> str | None:
        """The student (hub user) the evidence names, if any."""
        found = self.owners.judge(evidence) if evidence is not None else None
        return found.user if found is not None and found.hub_user else None

    def _locate_unit(self, pid: int, user: str) -> None:
        try:
            text = (self.procfs / str(pid) / "cgroup").read_text(errors="replace")
        except OSError:
            return
        unit = self.cgroups.locate(parse_proc_cgroup(text), self.owners.prefix, user)
        if unit is not None:
            log.debug("user %s has unit cgroup %s", user, unit)
            self._units[user] = unit

    def _forget_users(self) -> None:
        """Drops users without processes who no longer count (``roster.keep_user``)."""
        now = self.clock()
        self._last_seen = {
            user: seen
            for user, seen in self._last_seen.items()
            if self.owners.keep(user, seen, now)
        }
        for counts in (self._totals.cpu, self._totals.oom):
            for user in set(counts) - set(self._last_seen):
                del counts[user]

    def _per_user(self, cpu_increase: Counter[str], rss: Counter[str]) -> list[UserHost]:
        usages: dict[str, CgroupUsage] = {}
        for user, unit in list(self._units.items()):
            if not unit.exists():
                del self._units[user]  # the server stopped; a new one is found again
                continue
            usages[user] = self.cgroups.usage(unit)
        totals = self._totals
        for user in sorted(self._last_seen):
            usage = usages.get(user)
            unit = self._units.get(user)
            cgroup_cpu = self._cgroup_increase(totals.cgroup_cpu, unit, usage, "cpu_seconds")
            totals.cpu[user] += cgroup_cpu if cgroup_cpu is not None else cpu_increase[user]
            cgroup_oom = self._cgroup_increase(totals.cgroup_oom, unit, usage, "oom_kills")
            if cgroup_oom is not None:
                totals.oom[user] += int(cgroup_oom)
        self._count_logged_kills(usages)
        self._forget_users()
        result = []
        for user in sorted(self._last_seen):
            usage = usages.get(user) or CgroupUsage()
            result.append(
                UserHost(
                    user=user,
                    cpu_seconds=totals.cpu[user],
                    memory_used_bytes=(
                        usage.memory_used_bytes
                        if usage.memory_used_bytes is not None
                        else rss[user]
                    ),
                    memory_limit_bytes=usage.memory_limit_bytes,
                    oom_kills=totals.oom[user],
                    source="cgroup" if user in usages else "proc",
                )
            )
        return result

    @staticmethod
    def _cgroup_increase(
        last: dict[Path, float], unit: UnitCgroup | None, usage: CgroupUsage | None, name: str
    ) -> float | None:
        value = getattr(usage, name) if usage is not None else None
        if unit is None or value is None:
            return None
        key = unit.v2 or unit.memory_v1 or unit.cpuacct_v1
        assert key is not None
        grown = increase(last.get(key), value)
        last[key] = value
        return grown

    def _count_logged_kills(self, usages: dict[str, CgroupUsage]) -> None:
        """Kernel-log OOM kills for users whose cgroup does not count them itself."""
        if self.kmsg is None:
            return
        for kill in self.kmsg.take():
            user = self._kill_owner(kill.pid, kill.uid, self._recent)
            if user is None:
                log.debug("OOM kill of pid %d (uid %s): not a hub user", kill.pid, kill.uid)
                continue
            usage = usages.get(user)
            if usage is not None and usage.oom_kills is not None:
                continue  # the user's cgroup already counted it
            self._last_seen[user] = self.clock()
            self._totals.oom[user] += 1
            log.info(
                "OOM killer killed pid %d (%s) of %s",
                kill.pid,
                log_text(kill.command, 64),
                log_text(user),
            )

    def _kill_owner(self, pid: int, uid: int | None, by_pid: dict[int, _Seen]) -> str | None:
        """The student whose process the kernel log says was killed: by the pid when this
        poll or the last saw it, else by the uid's account alone."""
        known = by_pid.get(pid)
        if known is not None and known.evidence is not None:
            return self._student(known.evidence)
        return self._student(self.owners.account_evidence(uid))
