"""Lists the processes on each GPU with their memory and recent SM utilization.

Each GPU stands alone: a GPU whose process list NVML does not support, or whose calls fail
(counted by the session), is left out of the result, and the others are still read.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pynvml

from .nvml import ABSENT_FIELD_ERRORS, NvmlSession, text

log = logging.getLogger(__name__)


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


class _ProcessInfoV1(ctypes.Structure):
    """The pre-470 driver struct: pid and memory only."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


def _list_v1(function_name: str) -> Callable[[object], list[object]]:
    """A reader for drivers that only export the unversioned process list functions."""

    def read(handle: object) -> list[object]:
        function = pynvml._nvmlGetFunctionPointer(function_name)
        count = ctypes.c_uint(0)
        ret = function(handle, ctypes.byref(count), None)
        if ret == pynvml.NVML_SUCCESS:
            return []
        if ret != pynvml.NVML_ERROR_INSUFFICIENT_SIZE:
            raise pynvml.NVMLError(ret)
        count.value = count.value * 2 + 5  # room for processes started between the calls
        buffer = (_ProcessInfoV1 * count.value)()
        pynvml._nvmlCheckReturn(function(handle, ctypes.byref(count), buffer))
        not_available = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        return [
            pynvml.nvmlFriendlyObject(
                {
                    "pid": item.pid,
                    "usedGpuMemory": None
                    if item.usedGpuMemory == not_available
                    else item.usedGpuMemory,
                }
            )
            for item in buffer[: count.value]
        ]

    return read


# Newest first: _v3 (driver 510+), _v2 (470+), the unversioned v1 before that.
PROCESS_LISTERS: dict[str, list[Callable[[object], list[object]]]] = {
    "compute": [
        pynvml.nvmlDeviceGetComputeRunningProcesses_v3,
        pynvml.nvmlDeviceGetComputeRunningProcesses_v2,
        _list_v1("nvmlDeviceGetComputeRunningProcesses"),
    ],
    "graphics": [
        pynvml.nvmlDeviceGetGraphicsRunningProcesses_v3,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses_v2,
        _list_v1("nvmlDeviceGetGraphicsRunningProcesses"),
    ],
}


def list_processes(handle: object, kind: str) -> list[object]:
    for lister in PROCESS_LISTERS[kind]:
        try:
            return lister(handle)
        except pynvml.NVMLError_FunctionNotFound:
            continue
    return []


def latest_sm_utilization(samples: list[object]) -> tuple[dict[int, float], int]:
    """Per PID, the newest sample's SM utilization as a ratio; and the newest timestamp."""
    newest: dict[int, object] = {}
    for sample in samples:
        kept = newest.get(sample.pid)
        if kept is None or sample.timeStamp > kept.timeStamp:
            newest[sample.pid] = sample
    last_seen = max((s.timeStamp for s in samples), default=0)
    return {pid: min(s.smUtil, 100) / 100.0 for pid, s in newest.items()}, last_seen


class GpuProcessReader:
    """Keeps, per GPU, the timestamp of the last utilization sample it has seen, so each
    cycle asks NVML only for samples newer than the previous cycle."""

    def __init__(self, session: NvmlSession) -> None:
        self.session = session
        self._last_seen: dict[str, int] = {}
        self._uuids: dict[int, str] = {}

    def read(self) -> tuple[GpuProcessList, ...]:
        """The process lists of the GPUs that could be read."""
        self.session.ensure()
        found: list[GpuProcessList] = []
        for index in range(self.session.call(pynvml.nvmlDeviceGetCount)):
            try:
                found.append(self._read_gpu(index))
            except pynvml.NVMLError as exc:
                # Lost (the gpu collector reports it), not supported, or a failed call
                # (counted): this GPU's processes are unknown, the other GPUs' are not.
                log.debug("GPU %d: processes not read: %s", index, exc)
        return tuple(found)

    def _read_gpu(self, index: int) -> GpuProcessList:
        uuid = self._uuids.get(index, "unknown")
        handle = self.session.gpu_call(index, uuid, pynvml.nvmlDeviceGetHandleByIndex, index)
        uuid = text(self.session.gpu_call(index, uuid, pynvml.nvmlDeviceGetUUID, handle))
        self._uuids[index] = uuid
        processes = {}
        for kind in PROCESS_LISTERS:
            call = f"Get{kind.title()}RunningProcesses"
            for info in self.session.gpu_call(index, uuid, list_processes, handle, kind, call=call):
                # A process with both contexts is listed twice; count it once.
                processes.setdefault(info.pid, info.usedGpuMemory)
        utilization = self._utilization(index, handle, uuid)
        return GpuProcessList(
            index,
            uuid,
            tuple(
                GpuProcess(index, uuid, pid, memory, utilization.get(pid, 0.0))
                for pid, memory in sorted(processes.items())
            ),
        )

    def _utilization(self, index: int, handle: object, uuid: str) -> dict[int, float]:
        try:
            samples = self.session.gpu_call(
                index,
                uuid,
                pynvml.nvmlDeviceGetProcessUtilization,
                handle,
                self._last_seen.get(uuid, 0),
                expected=(pynvml.NVMLError_NotFound,),
            )
        except (pynvml.NVMLError_NotFound, *ABSENT_FIELD_ERRORS):
            # NotFound: no process ran a kernel since the last sample, as on an idle GPU.
            return {}
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            return {}  # counted; the memory of its processes is still known
        by_pid, last_seen = latest_sm_utilization(list(samples))
        if last_seen:
            self._last_seen[uuid] = last_seen
        return by_pid
