"""The exporter's data: frozen snapshots that sources return and collectors render.

Nothing here does I/O or imports a source or a collector; both import this module. A
snapshot is a value: two reads of an unchanged source are equal, which is how the
exposition knows it may reuse a collector's rendered part (``exposition.py``).

- NVML, read once per cycle (``sources.nvml``): ``NvmlSnapshot`` with every ``Gpu``, the
  ``GpuProcessList`` of each GPU whose processes could be read, XID and NVML error counts.
- /proc, walked once per cycle (``sources.proctable``): a ``ProcessTable`` of
  ``ProcessEntry``; each carries what /proc says about the process (``Evidence``, its raw
  cgroup lines, a few environment variables) and whom the attribution rules give it to
  (``Attribution``).
- What the kernels and host sources make of the table: ``KernelsSnapshot``, ``HostSnapshot``.
- The hub's users: ``HubSnapshot`` of ``HubUser`` with their ``HubServer``s.
- On Kubernetes, the students' pods on this node: ``StudentPods``.
- What each student's kernels and GPU processes do, and why kernels died
  (``sources.students``): ``StudentsSnapshot``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# --- GPUs (NVML) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """One GPU in one cycle. None means NVML does not support the field on this GPU."""

    index: int
    uuid: str
    up: bool
    name: str = ""
    utilization_ratio: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    clock_hertz: Mapping[str, float] = field(default_factory=dict)
    clocks_event_active: Mapping[str, bool] | None = None
    ecc_errors: Mapping[str, int] | None = None


@dataclass(frozen=True)
class GpuProcess:
    gpu_index: int
    gpu_uuid: str
    pid: int
    used_memory_bytes: int | None  # None: the driver does not account it (NVML "not available")
    sm_utilization_ratio: float  # 0 when NVML has no recent sample for the process


@dataclass(frozen=True)
class GpuProcessList:
    """Every process NVML lists on one GPU."""

    gpu_index: int
    gpu_uuid: str
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True)
class XidEvent:
    """One XID error as it arrived: on which GPU, which XID, when (unix time)."""

    gpu_uuid: str
    xid: int
    at: float


@dataclass(frozen=True)
class NvmlSnapshot:
    driver_version: str
    cuda_version: str
    gpus: tuple[Gpu, ...]
    # Only the GPUs whose process list could be read (a GPU that does not support it, or
    # whose call failed, is absent: its processes are unknown, not zero).
    processes: tuple[GpuProcessList, ...] = ()
    # (gpu index, uuid, xid) -> events seen since the exporter started
    xid_errors: Mapping[tuple[int, str, int], int] = field(default_factory=dict)
    # (gpu index, uuid, call) -> NVML calls for that GPU that failed since the exporter started
    nvml_errors: Mapping[tuple[int, str, str], int] = field(default_factory=dict)
    # The latest XID events, newest last (a few dozen at most), to tell why a kernel died.
    recent_xids: tuple[XidEvent, ...] = ()
    # time.monotonic() when the enumeration began: what GPU time is integrated over.
    read_at: float = field(default=0.0, compare=False)


# --- Processes (/proc) and who owns them ------------------------------------------------

# The environment variables the process table keeps (sources.proctable): whose process it
# says it is, and the GPU the hub gave a student's server (installer/hub/gpu_hook.py).
HUB_USER_VARIABLE = "JUPYTERHUB_USER"
VISIBLE_DEVICES_VARIABLE = "CUDA_VISIBLE_DEVICES"
SESSION_NAME_VARIABLE = "JPY_SESSION_NAME"  # a kernel's notebook (sources.kernels)


@dataclass(frozen=True)
class Evidence:
    """What /proc says about a process's owner, before anything is believed."""

    unit_user: str | None = None  # X of /system.slice/<prefix>X.service
    account: str | None = None  # the account of the real uid; None: a uid without one
    environ_user: str | None = None  # JUPYTERHUB_USER, which anyone can set
    pod_uid: str | None = None  # the Kubernetes pod whose cgroup the process is in


@dataclass(frozen=True)
class Attribution:
    """The owner of a process and the rule that named it: "unit", "account", "environ",
    "pod" (Kubernetes: the student of the process's pod), or "linux-account" (no hub: the
    account stands in; root, daemons, the lecturer)."""

    user: str
    via: str

    @property
    def hub_user(self) -> bool:
        """True when the owner is a student (hub user), not just some account."""
        return self.via != "linux-account"


@dataclass(frozen=True)
class ProcessIdentity:
    """What a process is, read once when it is first seen (and again after an exec)."""

    uid: int | None
    cgroup: tuple[str, ...]  # the raw lines of /proc/<pid>/cgroup, for every attribution rule
    environ: Mapping[str, str]  # only the variables the exporter reads (sources.proctable)
    argv: tuple[str, ...]
    evidence: Evidence


@dataclass(frozen=True)
class ProcessEntry:
    """One process in one cycle's walk of /proc."""

    pid: int
    start_ticks: int  # with pid, names the process: pids are reused, start times are not
    ppid: int
    state: str  # "R", "S", "Z" (zombie), ...
    cpu_seconds: float
    rss_bytes: int
    identity: ProcessIdentity
    owner: Attribution | None  # by this cycle's rules and hub roster; None: nobody's

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass(frozen=True)
class ProcessTable:
    """Every process /proc listed in one walk, by pid."""

    entries: Mapping[int, ProcessEntry] = field(default_factory=dict)
    walk_started: float = 0.0  # time.monotonic() when the walk began

    def get(self, pid: int) -> ProcessEntry | None:
        return self.entries.get(pid)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


# --- What the kernels and host sources make of the table --------------------------------


@dataclass(frozen=True)
class RunningKernel:
    """A student's kernel process now (the outermost one, which jupyter_client started)."""

    user: str
    pid: int
    start_ticks: int
    connection_file: str  # absolute where /proc told where it is
    uid: int | None  # the account it runs as
    notebook: str = ""  # the notebook's file name, from its start (sources.kernels)

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass(frozen=True)
class KernelCrash:
    """A student's kernel that died unexpectedly, as ``sources.kernels`` judged it."""

    seq: int  # counts every crash since the exporter started: who read up to where
    kernel: RunningKernel
    cause: str  # the crashes counter's label: the signal's name, or "exit"
    status: int  # the wait(2) status
    ended_at: float  # unix time of the exit


@dataclass(frozen=True)
class KernelsSnapshot:
    running: Mapping[str, int]  # user -> kernels running now
    crashes: Mapping[tuple[str, str], int]  # (user, signal or "exit") -> since start
    unknown_exits: Mapping[str, int]
    users: frozenset[str]  # every user who keeps series (zeros included)
    exit_events: str  # "netlink" or "poll"
    kernels: tuple[RunningKernel, ...] = ()  # the students' kernels running now
    recent_crashes: tuple[KernelCrash, ...] = ()  # the latest crashes, oldest first


@dataclass(frozen=True)
class UserHost:
    user: str
    cpu_seconds: float
    memory_used_bytes: int
    memory_limit_bytes: int | None
    oom_kills: int
    source: str  # "cgroup" or "proc"


@dataclass(frozen=True)
class OomVictim:
    """A student's process the kernel log says the OOM killer killed."""

    pid: int
    user: str
    at: float  # unix time the exporter read the line


@dataclass(frozen=True)
class HostSnapshot:
    users: tuple[UserHost, ...] = ()
    recent_oom_victims: tuple[OomVictim, ...] = ()  # the latest, oldest first


# --- The hub ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubServer:
    name: str  # "" for the default server
    ready: bool
    pending: str | None  # "spawn", "stop", ... while a transition runs
    started: float | None  # unix time


@dataclass(frozen=True)
class HubUser:
    name: str  # the label value: capped when very long
    admin: bool
    groups: tuple[str, ...]
    last_activity: float | None
    servers: tuple[HubServer, ...]
    full_name: str  # the whole name, which Linux account names derive from


@dataclass(frozen=True)
class HubSnapshot:
    users: tuple[HubUser, ...]
    truncated: bool = False  # the hub has more users than the exporter reads


# --- Kubernetes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentPods:
    """The students' pods on this node, as the Kubernetes API last said: pod UID -> hub
    user (only pods KubeSpawner made for a student; see ``sources.kubepods``)."""

    students: Mapping[str, str] = field(default_factory=dict)


# --- Students: their kernels on the GPU, why kernels died, GPU time ---------------------


@dataclass(frozen=True)
class GpuTime:
    """What one user's processes used of one GPU since the exporter started."""

    user: str
    gpu_index: int
    gpu_uuid: str
    busy_seconds: float  # utilization integrated over time: seconds of a fully busy GPU
    memory_byte_seconds: float


@dataclass(frozen=True)
class KernelGpuUse:
    """A student's kernel now: what it and its descendants hold on the GPUs."""

    user: str
    kernel_id: str
    pid: int
    started: float | None  # unix time
    memory_bytes: int
    utilization_ratio: float  # on the busiest of its GPUs, 0..1
    idle_since: float | None  # unix time since which it held GPU memory at 0 % utilization
    gpus: tuple[str, ...]  # the uuids of the GPUs it holds memory on
    notebook: str = ""  # "" where unknown


@dataclass(frozen=True)
class OtherGpuProcess:
    """A student's GPU process outside any kernel (a script in a terminal, say)."""

    user: str
    pid: int
    command: str  # cleaned and capped
    memory_bytes: int
    idle_since: float | None
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class KernelDeath:
    """Why a student's kernel died, in one of ``DEATH_REASONS`` and one line of detail."""

    user: str
    kernel_id: str
    at: float  # unix time
    reason: str
    detail: str
    notebook: str = ""  # "" where unknown


# In the order they are tried: the first with evidence names the death.
DEATH_REASONS = ("oom_killer", "cuda_oom", "xid", "signal", "exit")


@dataclass(frozen=True)
class StudentsSnapshot:
    generated_at: float  # unix time of the reading
    users: frozenset[str]  # who has per-user series: the hub's users, else everyone seen
    kernel_users: frozenset[str]  # users seen with a kernel (deaths by reason, zeros too)
    gpu_time: tuple[GpuTime, ...] = ()
    kernels: tuple[KernelGpuUse, ...] = ()
    other_processes: tuple[OtherGpuProcess, ...] = ()
    deaths: tuple[KernelDeath, ...] = ()  # the latest few per user, oldest first
    death_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    idle_culls: Mapping[str, int] = field(default_factory=dict)
