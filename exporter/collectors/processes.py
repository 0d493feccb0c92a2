"""The ``processes`` collector: GPU use per JupyterHub user, per GPU.

Every process NVML lists on a GPU is attributed to its owner (see ``sources.owners``) and
summed per (user, GPU); what no rule attributes (another account's process, a process
that vanished, a uid without an account) is summed per GPU as unattributed, so per GPU the
users' memory plus the unattributed memory is all the memory NVML lists for processes.
A GPU whose process list cannot be read has no series here. Sample output::

    dlcourse_user_gpu_memory_used_bytes{gpu="0",user="alice",uuid="GPU-..."} 2.147483648e+09
    dlcourse_user_gpu_utilization_ratio{gpu="0",user="alice",uuid="GPU-..."} 0.45
    dlcourse_user_gpu_processes{gpu="0",user="alice",uuid="GPU-..."} 2
    dlcourse_gpu_unattributed_memory_bytes{gpu="0",uuid="GPU-..."} 5.36870912e+08
    dlcourse_gpu_unattributed_processes{gpu="0",uuid="GPU-..."} 1
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from ..metricdefs import gauge
from ..sources.nvml import NvmlSession
from ..sources.nvml_processes import GpuProcess, GpuProcessList, GpuProcessReader
from ..sources.owners import OwnerResolver
from .base import Collector

log = logging.getLogger(__name__)

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
METRICS = (MEMORY, UTILIZATION, PROCESSES, UNATTRIBUTED_MEMORY, UNATTRIBUTED_PROCESSES)


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


@dataclass(frozen=True)
class ProcessesSnapshot:
    users: tuple[UserGpuUse, ...]
    unattributed: tuple[UnattributedUse, ...]


def split_by_owner(
    gpus: Iterable[GpuProcessList], owner_of: Callable[[int], str | None]
) -> ProcessesSnapshot:
    """Each GPU's processes summed per owner, and what has none per GPU."""
    owned: list[tuple[str, GpuProcess]] = []
    unattributed = []
    for gpu in gpus:
        memory = count = 0
        for process in gpu.processes:
            user = owner_of(process.pid)
            if user is None:
                memory += process.used_memory_bytes or 0
                count += 1
            else:
                owned.append((user, process))
        unattributed.append(UnattributedUse(gpu.gpu_index, gpu.gpu_uuid, memory, count))
    return ProcessesSnapshot(sum_by_user(owned), tuple(unattributed))


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


class ProcessesCollector(Collector):
    name = "processes"

    def __init__(
        self,
        session: NvmlSession,
        owners: OwnerResolver,
        interval: float = 5.0,
    ) -> None:
        self.interval = interval
        self.reader = GpuProcessReader(session)
        self.owners = owners

    def poll(self) -> ProcessesSnapshot:
        return split_by_owner(self.reader.read(), self._owner)

    def _owner(self, pid: int) -> str | None:
        user = self.owners.owner(pid)
        if user is None:
            log.debug("GPU process %d has no owner the rules accept: unattributed", pid)
        return user

    def render(self, snapshot: ProcessesSnapshot | None) -> Iterator[Metric]:
        memory, utilization, processes, lost_memory, lost_processes = (
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
        yield from (memory, utilization, processes, lost_memory, lost_processes)
