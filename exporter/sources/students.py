"""Each student's own view: their kernels on the GPU, idle GPU memory, why a kernel died,
GPU time, and the idle kernels the culler shut down.

One source, after the walk of /proc and the kernels source (which it needs) and NVML and
the host source (which it takes when they answered: a death is still explained while
NVML is down, only without the GPU's part). Each cycle:

- every GPU process is given to the kernel it descends from (the kernel process itself,
  or a child it started), else, when it is a student's, reported as one of their other GPU
  processes, never as a kernel (``kernel_of``);
- each kernel's memory, utilization and ``idle_since``, and each other process's
  (``gpu_idle``); the exporter applies no threshold, the culler does;
- GPU time per user and GPU (``gpu_time``);
- each crash ``sources.kernels`` judged since the last cycle gets its reason
  (``deaths``), from the OOM killer's victims and the user's cgroup OOM counter
  (``sources.host``), the kernel's own CUDA OOM notes (``kernel_errors``), and XIDs on the
  GPUs it held memory on;
- culls reported by the culler (``record_cull``, from the API) are counted, once per
  kernel, and only for a kernel the exporter saw for that user.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from ..model import (
    HostSnapshot,
    KernelCrash,
    KernelDeath,
    KernelGpuUse,
    KernelsSnapshot,
    NvmlSnapshot,
    OtherGpuProcess,
    ProcessEntry,
    ProcessTable,
    RunningKernel,
    StudentsSnapshot,
)
from ..untrusted import log_text, shown_text
from . import deaths
from .base import Source
from .culls import CullLedger
from .gpu_idle import IdleClocks
from .gpu_time import GpuReading, GpuTimeMeter, per_user
from .kernel_errors import errors_path, read_gpu_errors
from .owners import OwnerRules
from .procfs import CLOCK_TICKS, kernel_id
from .proctable import read_bounded
from .roster import SharedRoster

log = logging.getLogger(__name__)

MAX_ANCESTORS = 64  # how far up a GPU process's parents are followed to find its kernel
MAX_COMMAND_CHARS = 200
DEATHS_PER_USER = 20
DEATH_RETENTION_SECONDS = 7 * 24 * 3600.0
# How long a kernel's GPUs are remembered after it stopped running: its death is judged a
# grace period later (sources.kernels).
HELD_GPUS_SECONDS = 120.0
# GPU time across a gap of at most this many collection intervals (and at least
# MIN_BRIDGED_SECONDS) is counted; longer gaps are unknown time (sources.gpu_time).
BRIDGED_INTERVALS = 4
MIN_BRIDGED_SECONDS = 10.0


def kernel_of(
    entry: ProcessEntry | None,
    table: ProcessTable,
    kernels: Mapping[int, RunningKernel],
    known: dict[int, RunningKernel | None] | None = None,
) -> RunningKernel | None:
    """The running kernel a process is, or descends from (start times checked: pids are
    reused). ``known``: what this cycle's earlier calls found, by pid; siblings share their
    parents, so a class's processes are walked up once."""
    known = {} if known is None else known
    walked: list[int] = []
    found: RunningKernel | None = None
    for _ in range(MAX_ANCESTORS):
        if entry is None:
            break
        if entry.pid in known:
            found = known[entry.pid]
            break
        walked.append(entry.pid)
        kernel = kernels.get(entry.pid)
        if kernel is not None and kernel.start_ticks == entry.start_ticks:
            found = kernel
            break
        if entry.ppid == entry.pid:
            break
        entry = table.get(entry.ppid)
    else:
        return None  # deeper than MAX_ANCESTORS: nothing learnt about the ones walked
    known.update(dict.fromkeys(walked, found))
    return found


def read_boot_time(procfs: Path) -> float | None:
    """The btime line of /proc/stat: when the machine booted (unix time)."""
    try:
        text = read_bounded(f"{procfs}/stat", 64 * 1024).decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


class _Use:
    """What a kernel (with its descendants) or another process holds, summed per GPU."""

    __slots__ = ("memory", "utilization")

    def __init__(self) -> None:
        self.memory: dict[str, int] = {}  # GPU uuid -> bytes
        self.utilization: dict[str, float] = {}  # GPU uuid -> summed ratio

    def add(self, uuid: str, memory: int, utilization: float) -> None:
        self.memory[uuid] = self.memory.get(uuid, 0) + memory
        self.utilization[uuid] = self.utilization.get(uuid, 0.0) + utilization

    def reading(self) -> tuple[float, int]:
        """(utilization on the busiest GPU, at most 1; memory on all of them)."""
        return (min(max(self.utilization.values(), default=0.0), 1.0), sum(self.memory.values()))

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(sorted(self.memory))


@lru_cache(maxsize=4096)
def command_line(argv: tuple[str, ...]) -> str:
    """A process's command as one clean, cut line (the same argv comes back every cycle)."""
    return shown_text(" ".join(argv), MAX_COMMAND_CHARS)


class StudentsSource(Source):
    name = "students"
    needs = ("proc", "kernels")
    optionally = ("nvml", "host")

    def __init__(
        self,
        owners: OwnerRules,
        roster: SharedRoster | None = None,
        procfs: Path = Path("/proc"),
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.owners = owners
        self.roster = roster
        self.interval = interval
        self.clock = clock
        self.wall_clock = wall_clock
        self.boot_time = read_boot_time(procfs)
        self.meter = GpuTimeMeter(max(BRIDGED_INTERVALS * interval, MIN_BRIDGED_SECONDS))
        self.culls = CullLedger()
        self._kernel_idle: IdleClocks[tuple[int, int]] = IdleClocks()
        self._other_idle: IdleClocks[tuple[int, int]] = IdleClocks()
        self._held: dict[tuple[int, int], tuple[tuple[str, ...], float]] = {}  # kernel -> GPUs
        self._judged_up_to = 0  # KernelCrash.seq
        self._listed_up_to = 0  # the highest seq the previous poll listed
        self._deaths: dict[str, deque[KernelDeath]] = {}
        self._death_counts: Counter[tuple[str, str]] = Counter()
        self._oom_kills: dict[str, int] = {}  # the host source's counter at the last poll
        self._oom_rose_at: dict[str, float] = {}  # when it last grew (unix time)
        self._last_seen: dict[str, float] = {}

    def record_cull(self, user: str, kernel: str) -> int | None:
        """Called by the API for the culler; see ``CullLedger.record``."""
        return self.culls.record(user, kernel, self.clock())

    def poll(
        self,
        table: ProcessTable,
        kernels: KernelsSnapshot,
        nvml: NvmlSnapshot | None,
        host: HostSnapshot | None,
    ) -> StudentsSnapshot:
        now, wall = self.clock(), self.wall_clock()
        running = {kernel.pid: kernel for kernel in kernels.kernels}
        kernel_use: dict[tuple[int, int], _Use] = {k.key: _Use() for k in running.values()}
        other_use: dict[tuple[int, int], tuple[ProcessEntry, _Use]] = {}
        if nvml is not None:
            self.meter.add(self._read_gpus(nvml, table, running, kernel_use, other_use, now))
        ids: dict[str, list[str]] = defaultdict(list)  # user -> their kernels' ids
        for kernel in running.values():
            self._last_seen[kernel.user] = now
            ids[kernel.user].append(kernel_id(kernel.connection_file))
            if kernel_use[kernel.key].gpus:
                self._held[kernel.key] = (kernel_use[kernel.key].gpus, now)
        self._held = {k: v for k, v in self._held.items() if now - v[1] <= HELD_GPUS_SECONDS}
        for user, seen in ids.items():
            self.culls.saw(user, seen, now)

        kernel_reading = {key: use.reading() for key, use in kernel_use.items()}
        other_reading = {key: use.reading() for key, (_, use) in other_use.items()}
        # Without NVML nothing is known to be idle: the clocks start again when it is back.
        kernel_idle = self._kernel_idle.update(kernel_reading if nvml else {}, wall)
        other_idle = self._other_idle.update(other_reading, wall)
        self._watch_oom_counters(host, wall)
        self._judge_deaths(kernels.recent_crashes, nvml, host, wall)
        self._forget(now, wall, kernels.users)
        return StudentsSnapshot(
            generated_at=wall,
            users=self._users(),
            kernel_users=frozenset(kernels.users | self._deaths.keys()),
            gpu_time=self.meter.totals(),
            kernels=tuple(
                KernelGpuUse(
                    user=kernel.user,
                    kernel_id=kernel_id(kernel.connection_file),
                    notebook=kernel.notebook,
                    pid=kernel.pid,
                    started=self._started(kernel.start_ticks),
                    memory_bytes=kernel_reading[kernel.key][1],
                    utilization_ratio=kernel_reading[kernel.key][0],
                    idle_since=kernel_idle.get(kernel.key),
                    gpus=kernel_use[kernel.key].gpus,
                )
                for kernel in sorted(running.values(), key=lambda k: (k.user, k.key))
            ),
            other_processes=tuple(
                OtherGpuProcess(
                    user=entry.owner.user if entry.owner else "",
                    pid=entry.pid,
                    command=command_line(entry.identity.argv),
                    memory_bytes=other_reading[key][1],
                    idle_since=other_idle[key],
                    gpus=use.gpus,
                )
                for key, (entry, use) in sorted(other_use.items())
            ),
            deaths=tuple(death for user in sorted(self._deaths) for death in self._deaths[user]),
            death_counts=dict(self._death_counts),
            idle_culls=self.culls.snapshot(),
        )

    def _read_gpus(
        self,
        nvml: NvmlSnapshot,
        table: ProcessTable,
        running: Mapping[int, RunningKernel],
        kernel_use: dict[tuple[int, int], _Use],
        other_use: dict[tuple[int, int], tuple[ProcessEntry, _Use]],
        now: float,
    ) -> list[GpuReading]:
        """Each GPU's use per user (for GPU time); fills in each kernel's and each other
        student process's use."""
        readings: list[GpuReading] = []
        known: dict[int, RunningKernel | None] = {}  # kernel_of's findings this cycle
        for gpu in nvml.processes:
            owned = []
            for process in gpu.processes:
                entry = table.get(process.pid)
                memory = process.used_memory_bytes or 0
                utilization = process.sm_utilization_ratio
                owner = entry.owner if entry is not None else None
                if owner is not None:
                    owned.append((owner.user, utilization, memory))
                    self._last_seen[owner.user] = now
                kernel = kernel_of(entry, table, running, known)
                if kernel is not None:
                    kernel_use[kernel.key].add(gpu.gpu_uuid, memory, utilization)
                elif entry is not None and owner is not None and owner.hub_user:
                    use = other_use.setdefault(entry.key, (entry, _Use()))[1]
                    use.add(gpu.gpu_uuid, memory, utilization)
            readings.append(GpuReading(gpu.gpu_index, gpu.gpu_uuid, nvml.read_at, per_user(owned)))
        return readings

    def _started(self, start_ticks: int) -> float | None:
        return None if self.boot_time is None else self.boot_time + start_ticks / CLOCK_TICKS

    def _watch_oom_counters(self, host: HostSnapshot | None, wall: float) -> None:
        """Notes when each student's OOM kill counter last grew: where the kernel log cannot
        be read, that is the evidence that a SIGKILL came from the OOM killer."""
        for user in host.users if host is not None else ():
            before = self._oom_kills.get(user.user)
            if before is not None and user.oom_kills > before:
                self._oom_rose_at[user.user] = wall
            self._oom_kills[user.user] = user.oom_kills

    def _judge_deaths(
        self,
        crashes: Iterable[KernelCrash],
        nvml: NvmlSnapshot | None,
        host: HostSnapshot | None,
        wall: float,
    ) -> None:
        # A crash is judged one poll after the poll that first listed it. A kernel may die of
        # an XID before the NVML source has read the driver's event (4 of 100 XID deaths were
        # judged "signal" before this); the next poll's NVML reading was taken after the death,
        # so it holds every XID that came before it.
        crashes = tuple(crashes)
        listed_before = self._listed_up_to
        self._listed_up_to = max((crash.seq for crash in crashes), default=listed_before)
        for crash in crashes:
            if crash.seq <= self._judged_up_to or crash.seq > listed_before:
                continue
            self._judged_up_to = crash.seq
            death = deaths.judge(crash, self._evidence(crash, nvml, host, wall))
            user = crash.kernel.user
            self._last_seen[user] = self.clock()
            self._deaths.setdefault(user, deque(maxlen=DEATHS_PER_USER)).append(death)
            self._death_counts[(user, death.reason)] += 1
            log.info(
                "kernel %s of %s died: %s (%s)",
                log_text(death.kernel_id, 64),
                log_text(user),
                death.reason,
                log_text(death.detail),
            )

    def _evidence(
        self,
        crash: KernelCrash,
        nvml: NvmlSnapshot | None,
        host: HostSnapshot | None,
        wall: float,
    ) -> deaths.Evidence:
        kernel, user = crash.kernel, crash.kernel.user
        victims = host.recent_oom_victims if host is not None else ()
        rose_at = self._oom_rose_at.get(user)
        oom_killed = any(
            victim.pid == kernel.pid and deaths.within(victim.at, crash.ended_at, wall)
            for victim in victims
        ) or (rose_at is not None and deaths.within(rose_at, crash.ended_at, wall))
        limit = next(
            (
                u.memory_limit_bytes
                for u in (host.users if host is not None else ())
                if u.user == user
            ),
            None,
        )
        path = errors_path(kernel.connection_file)
        errors = read_gpu_errors(path, kernel.uid) if path and kernel.uid is not None else []
        gpus = self._held.get(kernel.key, ((), 0.0))[0]
        xid = deaths.xid_of(crash, gpus, nvml.recent_xids if nvml is not None else (), wall)
        index = {gpu.uuid: gpu.index for gpu in nvml.gpus} if nvml is not None else {}
        return deaths.Evidence(
            oom_killed=oom_killed,
            memory_limit_bytes=limit,
            cuda_oom=deaths.cuda_oom_of(crash, errors, wall),
            xid=xid,
            xid_gpu_index=index.get(xid.gpu_uuid) if xid is not None else None,
        )

    @property
    def _hub_configured(self) -> bool:
        return self.roster is not None and self.roster.hub_configured

    def _users(self) -> frozenset[str]:
        """Who has per-user series: with a hub, its users (zeros included); else everyone
        seen lately."""
        if self._hub_configured:
            current = self.roster.current if self.roster is not None else None
            return current.users if current is not None else frozenset()
        return frozenset(self._last_seen)

    def _forget(self, now: float, wall: float, kernel_users: frozenset[str]) -> None:
        """Drops users who no longer count (``roster.keep_user``; the kernels source's users
        count as long as it keeps them) and deaths past retention."""
        self._last_seen = {
            user: seen
            for user, seen in self._last_seen.items()
            if self.owners.keep(user, seen, now)
        }
        kept = set(self._last_seen) | set(self._users()) | kernel_users
        for user in list(self._deaths):
            recent = [d for d in self._deaths[user] if wall - d.at <= DEATH_RETENTION_SECONDS]
            if user not in kept or not recent:
                del self._deaths[user]
            else:
                self._deaths[user] = deque(recent, maxlen=DEATHS_PER_USER)
        self._death_counts = Counter(
            {key: n for key, n in self._death_counts.items() if key[0] in kept}
        )
        self.meter.forget(lambda user: user in kept)
        self.culls.forget(now, lambda user: user in kept)
        for table in (self._oom_kills, self._oom_rose_at):
            for user in set(table) - kept:
                del table[user]
