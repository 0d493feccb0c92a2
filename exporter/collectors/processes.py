"""The ``processes`` collector: GPU use per JupyterHub user, per GPU.

Every process NVML lists on a GPU is attributed to its owner (see ``sources.owners``) and
summed per (user, GPU). Sample output::

    dlcourse_user_gpu_memory_used_bytes{gpu="0",user="alice",uuid="GPU-..."} 2.147483648e+09
    dlcourse_user_gpu_utilization_ratio{gpu="0",user="alice",uuid="GPU-..."} 0.45
    dlcourse_user_gpu_processes{gpu="0",user="alice",uuid="GPU-..."} 2
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from ..metricdefs import gauge
from ..sources.nvml import NvmlSession
from ..sources.nvml_processes import GpuProcess, GpuProcessReader
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
METRICS = (MEMORY, UTILIZATION, PROCESSES)


@dataclass(frozen=True)
class UserGpuUse:
    user: str
    gpu_index: int
    gpu_uuid: str
    memory_used_bytes: int
    utilization_ratio: float
    processes: int


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

    def poll(self) -> tuple[UserGpuUse, ...]:
        owned = []
        for process in self.reader.read():
            user = self.owners.owner(process.pid)
            if user is None:
                log.debug("GPU process %d has no known owner, not counted", process.pid)
                continue
            owned.append((user, process))
        return sum_by_user(owned)

    def render(self, snapshot: tuple[UserGpuUse, ...] | None) -> Iterator[Metric]:
        memory, utilization, processes = (metric.family() for metric in METRICS)
        for use in snapshot or ():
            labels = [use.user, str(use.gpu_index), use.gpu_uuid]
            memory.add_metric(labels, use.memory_used_bytes)
            utilization.add_metric(labels, use.utilization_ratio)
            processes.add_metric(labels, use.processes)
        yield from (memory, utilization, processes)
