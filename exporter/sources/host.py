"""CPU, memory and OOM kills per hub user: from the user's cgroup, else from /proc.

Who is reported: students only, i.e. owners of processes attributed by ``sources.owners``
(their systemd unit, their own account, ``JUPYTERHUB_USER`` where the account vouches for
it; with a hub, its users only). Root, daemons and the lecturer's own shell are left out,
so the label set stays as large as the class. A user stays reported (zeros included) while
``roster.keep_user`` keeps them, so counters do not vanish while they matter.

Counters are kept by the exporter and only ever grow: each poll adds the increase of the
chosen source (the unit cgroup where one is found, else the process table), and a cgroup
recreated with a lower value counts from zero again. /proc sums miss CPU a process used
after the last poll before it exited, and processes that live shorter than one poll
interval.

The kernel log's victims are also kept for a while (``recent_oom_victims``): a kernel that
died of SIGKILL and is among them was killed by the OOM killer (``sources.deaths``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..model import Attribution, HostSnapshot, OomVictim, ProcessEntry, ProcessTable, UserHost
from ..untrusted import log_text
from .base import Source
from .cgroups import CgroupReader, CgroupUsage, UnitCgroup
from .kmsg import KmsgWatcher
from .owners import OwnerRules, account_evidence
from .procfs import cgroup_paths

log = logging.getLogger(__name__)

RECENT_VICTIMS = 64  # the latest OOM kills of students, for telling why a kernel died


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


class HostTracker(Source):
    """Per student: CPU and memory of their processes in the table, or of their unit's
    cgroup, and OOM kills; its kernel-log thread starts with the first poll."""

    name = "host"
    needs = ("proc",)

    def __init__(
        self,
        owners: OwnerRules,
        cgroupfs: Path = Path("/sys/fs/cgroup"),
        kmsg: Path | None = Path("/dev/kmsg"),
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owners = owners
        self.clock = clock
        self.interval = interval
        self.cgroups = CgroupReader(cgroupfs)
        self.kmsg_path = kmsg
        self.kmsg: KmsgWatcher | None = None
        self._kmsg_tried = False
        self._cpu: dict[tuple[int, int], float] = {}  # students' processes: CPU at last poll
        self._tables: tuple[ProcessTable, ...] = ()  # this poll's and the last one's
        self._units: dict[str, UnitCgroup] = {}
        self._last_seen: dict[str, float] = {}  # user -> last poll with a process of theirs
        self._totals = _Totals()
        self._victims: deque[OomVictim] = deque(maxlen=RECENT_VICTIMS)

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

    def poll(self, table: ProcessTable) -> HostSnapshot:
        if not self._kmsg_tried:
            self._start_kmsg()
        cpu_increase: Counter[str] = Counter()
        rss: Counter[str] = Counter()
        cpu: dict[tuple[int, int], float] = {}
        for entry in table:
            user = student(entry.owner)
            if user is None:
                continue
            seen_before = self._cpu.get(entry.key)
            cpu_increase[user] += increase(seen_before, entry.cpu_seconds)
            cpu[entry.key] = entry.cpu_seconds
            rss[user] += entry.rss_bytes
            self._last_seen[user] = self.clock()
            if user not in self._units and seen_before is None:  # each process looked at once
                self._locate_unit(entry, user)
        self._tables = (table, *self._tables[:1])
        self._cpu = cpu
        users = tuple(self._per_user(cpu_increase, rss))
        return HostSnapshot(users, tuple(self._victims))

    def _locate_unit(self, entry: ProcessEntry, user: str) -> None:
        paths = cgroup_paths(entry.identity.cgroup)
        unit = self.cgroups.locate(paths, self.owners.prefix, user)
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
            user = self._kill_owner(kill.pid, kill.uid)
            if user is None:
                log.debug("OOM kill of pid %d (uid %s): not a hub user", kill.pid, kill.uid)
                continue
            self._victims.append(OomVictim(kill.pid, user, time.time()))
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

    def _kill_owner(self, pid: int, uid: int | None) -> str | None:
        """The student whose process the kernel log says was killed: by the pid when this
        poll or the last saw it with the uid the kernel logged, if it logged one (pids are
        reused; the log has no start time), else by the uid's account alone."""
        for table in self._tables:
            entry = table.get(pid)
            if entry is not None and uid in (None, entry.identity.uid):
                return student(self.owners.judge(entry.identity.evidence))
        return student(self.owners.judge(account_evidence(uid)))


def student(owner: Attribution | None) -> str | None:
    """The student (hub user) an attribution names, if any."""
    return owner.user if owner is not None and owner.hub_user else None
