"""The NVML source: every GPU, its processes and its XID events, in one pass per cycle.

The one owner of the NVML session's life cycle: it initialises NVML (with backoff), starts
the XID watcher with it, and shuts both down. Each cycle enumerates the GPUs once; for
each, its fields (``nvml_gpus``) and its process list (``nvml_processes``) are read on the
same handle, under one record of index -> UUID, which also names a lost GPU's events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pynvml

from ..model import Gpu, GpuProcessList, NvmlSnapshot
from .base import Source
from .nvml import NvmlSession, text
from .nvml_gpus import GONE_GPU_SECONDS, SeenGpu, format_cuda_version, read_gpu, with_gone_gpus
from .nvml_processes import read_processes
from .nvml_xid import XidWatcher

log = logging.getLogger(__name__)


class NvmlSource(Source):
    name = "nvml"

    def __init__(
        self,
        interval: float = 5.0,
        session: NvmlSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.session = session or NvmlSession()
        self.clock = clock
        self._uuids: dict[int, str] = {}  # index -> UUID, when last read
        self._seen: dict[str, SeenGpu] = {}  # UUID -> when last up, for GPUs that vanish
        self._samples_since: dict[str, int] = {}  # UUID -> newest utilization sample read
        self.xid = XidWatcher(self.session, self._uuids.get)
        self.session.on_init(self.xid.start)
        self.session.on_reset(self.xid.stop)

    def poll(self) -> NvmlSnapshot:
        read_at = self.clock()
        session = self.session
        session.ensure()
        driver = text(session.call(pynvml.nvmlSystemGetDriverVersion))
        cuda = session.call(pynvml.nvmlSystemGetCudaDriverVersion)
        gpus: list[Gpu] = []
        processes: list[GpuProcessList] = []
        for index in range(session.call(pynvml.nvmlDeviceGetCount)):
            known = self._uuids.get(index)
            try:
                handle = session.gpu_call(
                    index, known or "unknown", pynvml.nvmlDeviceGetHandleByIndex, index
                )
            except pynvml.NVMLError:
                gpus.append(Gpu(index, known or "unknown", up=False))
                continue
            gpu = read_gpu(session, index, handle, known)
            gpus.append(gpu)
            if gpu.up:
                self._uuids[index] = gpu.uuid
                listed = self._processes(index, gpu.uuid, handle)
                if listed is not None:
                    processes.append(listed)
        gpus, self._seen = with_gone_gpus(gpus, self._seen, self.clock(), GONE_GPU_SECONDS)
        index_of = {gpu.uuid: gpu.index for gpu in gpus}
        xid_errors = {
            (index_of[uuid], uuid, xid): count
            for (uuid, xid), count in self.xid.counts().items()
            if uuid in index_of
        }
        return NvmlSnapshot(
            driver,
            format_cuda_version(cuda),
            tuple(gpus),
            tuple(processes),
            xid_errors,
            session.error_counts(),
            self.xid.recent(),
            read_at,
        )

    def _processes(self, index: int, uuid: str, handle: object) -> GpuProcessList | None:
        """The GPU's process list; None when it cannot be read: not supported, lost since its
        fields were read, or a failed call (counted). The other GPUs' are still read."""
        try:
            listed, newest = read_processes(
                self.session, index, uuid, handle, self._samples_since.get(uuid, 0)
            )
        except pynvml.NVMLError as exc:
            log.debug("GPU %d: processes not read: %s", index, exc)
            return None
        self._samples_since[uuid] = newest
        return listed

    def close(self) -> None:
        self.session.close()
