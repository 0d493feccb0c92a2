"""The ``processes`` collector: GPU use per JupyterHub user, per GPU.

Every process NVML lists on a GPU is attributed to its owner (see ``sources.owners``) and
summed per (user, GPU); what no rule attributes (another account's process, a process
that vanished, a uid without an account) is summed per GPU as unattributed, so per GPU the
users' memory plus the unattributed memory is all the memory NVML lists for processes.
A GPU whose process list cannot be read has no series here. From the ``nvml`` source and
the ``proc`` table, which names each process's owner. Sample output::

    dlcourse_user_gpu_memory_used_bytes{gpu="0",user="alice",uuid="GPU-..."} 2.147483648e+09
    dlcourse_user_gpu_utilization_ratio{gpu="0",user="alice",uuid="GPU-..."} 0.45
    dlcourse_user_gpu_processes{gpu="0",user="alice",uuid="GPU-..."} 2
    dlcourse_gpu_unattributed_memory_bytes{gpu="0",uuid="GPU-..."} 5.36870912e+08
    dlcourse_gpu_unattributed_processes{gpu="0",uuid="GPU-..."} 1
    dlcourse_user_gpu_assigned{gpu="1",user="alice",uuid="GPU-..."} 1

The assigned GPU is read from the student's server process's environment
(``CUDA_VISIBLE_DEVICES``, set by the hub's GPU hook, installer/hub/gpu_hook.py), as /proc shows
it: the environment the process started with. What the process, or anything the student
runs in it, later sets with putenv() or ``os.environ`` does not show there
(proc_pid_environ(5), Linux man-pages: "If, after an execve(2), the process modifies its
environment [...], this file will not reflect those changes"; tests/tljh_conformance/
test_gpu_assignment.py shows it). The area that file shows is the process's own memory,
which it can overwrite in place: the process table keeps the variables as first read with
``JUPYTERHUB_USER`` for the process's life (``sources.proctable``).

Which process is the server: of the processes the attribution rules give to student X (by
unit or account: nothing a classmate can forge) and that carry ``JUPYTERHUB_USER=X``, the
one started first. Kernels, terminals and whatever a student starts with another
environment descend from the server and start after it; under TLJH all of a session's
processes live in X's unit and end with it (systemd's default ``KillMode=control-group``,
systemd.kill(5)), so none outlives one server to precede the next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from ..metricdefs import gauge
from ..model import (
    HUB_USER_VARIABLE,
    VISIBLE_DEVICES_VARIABLE,
    Gpu,
    GpuProcess,
    GpuProcessList,
    NvmlSnapshot,
    ProcessEntry,
    ProcessTable,
)
from .base import Collector

USER_GPU = ("user", "gpu", "uuid")
MEMORY = gauge(
    "dlcourse_user_gpu_memory_used_bytes", "GPU memory held by the user's processes.", *USER_GPU
)
UTILIZATION = gauge(
    "dlcourse_user_gpu_utilization_ratio",
    "SM utilization of the user's processes on the GPU (NVML process samples), 0..1.",
    *USER_GPU,
)
PROCESSES = gauge(
    "dlcourse_user_gpu_processes", "Number of the user's processes on the GPU.", *USER_GPU
)
UNATTRIBUTED_MEMORY = gauge(
    "dlcourse_gpu_unattributed_memory_bytes",
    "GPU memory of processes attributed to no hub user (other accounts, vanished processes).",
    *USER_GPU[1:],
)
UNATTRIBUTED_PROCESSES = gauge(
    "dlcourse_gpu_unattributed_processes",
    "Number of processes on the GPU attributed to no hub user.",
    *USER_GPU[1:],
)
ASSIGNED = gauge(
    "dlcourse_user_gpu_assigned",
    "1 for the GPU the hub assigned to the user's running server at spawn (from the server "
    "process's environment as the hub set it).",
    *USER_GPU,
)
METRICS = (
    MEMORY, UTILIZATION, PROCESSES, UNATTRIBUTED_MEMORY, UNATTRIBUTED_PROCESSES, ASSIGNED,
)  # fmt: skip


@dataclass(frozen=True)
class UserGpuUse:
    user: str
    gpu_index: int
    gpu_uuid: str
    memory_used_bytes: int
    utilization_ratio: float
    processes: int


@dataclass(frozen=True)
class UnattributedUse:
    gpu_index: int
    gpu_uuid: str
    memory_used_bytes: int
    processes: int


@dataclass(frozen=True, order=True)
class Assignment:
    user: str
    gpu_index: int
    gpu_uuid: str


@dataclass(frozen=True)
class ProcessesView:
    users: tuple[UserGpuUse, ...]
    unattributed: tuple[UnattributedUse, ...]
    assigned: tuple[Assignment, ...] = ()


def split_by_owner(gpus: Iterable[GpuProcessList], table: ProcessTable) -> ProcessesView:
    """Each GPU's processes summed per owner, and what has none per GPU (nobody's by the
    rules, or gone before the walk of /proc)."""
    owned: list[tuple[str, GpuProcess]] = []
    unattributed = []
    for gpu in gpus:
        memory = count = 0
        for process in gpu.processes:
            entry = table.get(process.pid)
            user = entry.owner.user if entry is not None and entry.owner is not None else None
            if user is None:
                memory += process.used_memory_bytes or 0
                count += 1
            else:
                owned.append((user, process))
        unattributed.append(UnattributedUse(gpu.gpu_index, gpu.gpu_uuid, memory, count))
    return ProcessesView(sum_by_user(owned), tuple(unattributed))


def sum_by_user(processes: Iterable[tuple[str, GpuProcess]]) -> tuple[UserGpuUse, ...]:
    """Adds up (owner, process) pairs per (user, GPU). Utilization is capped at 1."""
    memory: Counter[tuple[str, int, str]] = Counter()
    utilization: Counter[tuple[str, int, str]] = Counter()
    count: Counter[tuple[str, int, str]] = Counter()
    for user, process in processes:
        key = (user, process.gpu_index, process.gpu_uuid)
        memory[key] += process.used_memory_bytes or 0
        utilization[key] += process.sm_utilization_ratio
        count[key] += 1
    return tuple(
        UserGpuUse(*key, memory[key], min(utilization[key], 1.0), count[key])
        for key in sorted(count)
    )


def server_processes(table: ProcessTable) -> dict[str, ProcessEntry]:
    """Each student's server: the first started of their processes that carry their name."""
    servers: dict[str, ProcessEntry] = {}
    for entry in table:
        owner = entry.owner
        if owner is None or not owner.hub_user:
            continue
        if entry.identity.environ.get(HUB_USER_VARIABLE) != owner.user:
            continue
        first = servers.get(owner.user)
        if first is None or (entry.start_ticks, entry.pid) < (first.start_ticks, first.pid):
            servers[owner.user] = entry
    return servers


def assignments(table: ProcessTable, gpus: Iterable[Gpu]) -> tuple[Assignment, ...]:
    """(user, GPU) of each server started with one GPU's uuid in CUDA_VISIBLE_DEVICES.

    Anything else (no variable: staff or the policy ``all``; indices; several GPUs; the
    uuid of no GPU here) is no assignment: a label is only ever a GPU that NVML lists."""
    by_uuid = {gpu.uuid: gpu.index for gpu in gpus}
    found = []
    for user, server in server_processes(table).items():
        uuid = server.identity.environ.get(VISIBLE_DEVICES_VARIABLE, "").strip()
        if uuid in by_uuid:
            found.append(Assignment(user, by_uuid[uuid], uuid))
    return tuple(sorted(found))


class ProcessesCollector(Collector):
    name = "processes"
    description = "GPU memory and utilization per hub user, and each server's assigned GPU"
    sources = ("nvml", "proc")
    metrics = METRICS

    def view(self, nvml: NvmlSnapshot, table: ProcessTable) -> ProcessesView:
        split = split_by_owner(nvml.processes, table)
        return ProcessesView(split.users, split.unattributed, assignments(table, nvml.gpus))

    def render(self, snapshot: ProcessesView | None) -> Iterator[Metric]:
        memory, utilization, processes, lost_memory, lost_processes, assigned = (
            metric.family() for metric in METRICS
        )
        for use in snapshot.users if snapshot else ():
            labels = [use.user, str(use.gpu_index), use.gpu_uuid]
            memory.add_metric(labels, use.memory_used_bytes)
            utilization.add_metric(labels, use.utilization_ratio)
            processes.add_metric(labels, use.processes)
        for gpu in snapshot.unattributed if snapshot else ():
            labels = [str(gpu.gpu_index), gpu.gpu_uuid]
            lost_memory.add_metric(labels, gpu.memory_used_bytes)
            lost_processes.add_metric(labels, gpu.processes)
        for gpu in snapshot.assigned if snapshot else ():
            assigned.add_metric([gpu.user, str(gpu.gpu_index), gpu.gpu_uuid], 1)
        yield from (memory, utilization, processes, lost_memory, lost_processes, assigned)
