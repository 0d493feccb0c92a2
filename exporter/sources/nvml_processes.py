"""Lists the processes on one GPU with their memory and recent SM utilization.

A GPU whose process list NVML does not support, or whose calls fail (counted by the
session), raises for the caller (``sources.nvml_source``) to leave that GPU out; the
others are still read.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import pynvml

from ..model import GpuProcess, GpuProcessList
from .nvml import ABSENT_FIELD_ERRORS, NvmlSession


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


def read_processes(
    session: NvmlSession, index: int, uuid: str, handle: object, since: int
) -> tuple[GpuProcessList, int]:
    """The GPU's processes, and the timestamp of the newest utilization sample seen (to
    ask only for newer ones next cycle: ``since``)."""
    processes = {}
    for kind in PROCESS_LISTERS:
        call = f"Get{kind.title()}RunningProcesses"
        for info in session.gpu_call(index, uuid, list_processes, handle, kind, call=call):
            # A process with both contexts is listed twice; count it once.
            processes.setdefault(info.pid, info.usedGpuMemory)
    utilization, newest = sm_utilization(session, index, uuid, handle, since)
    listed = tuple(
        GpuProcess(index, uuid, pid, memory, utilization.get(pid, 0.0))
        for pid, memory in sorted(processes.items())
    )
    return GpuProcessList(index, uuid, listed), newest or since


def sm_utilization(
    session: NvmlSession, index: int, uuid: str, handle: object, since: int
) -> tuple[dict[int, float], int]:
    try:
        samples = session.gpu_call(
            index,
            uuid,
            pynvml.nvmlDeviceGetProcessUtilization,
            handle,
            since,
            expected=(pynvml.NVMLError_NotFound,),
        )
    except (pynvml.NVMLError_NotFound, *ABSENT_FIELD_ERRORS):
        # NotFound: no process ran a kernel since the last sample, as on an idle GPU.
        return {}, 0
    except pynvml.NVMLError_GpuIsLost:
        raise
    except pynvml.NVMLError:
        return {}, 0  # counted; the memory of its processes is still known
    return latest_sm_utilization(list(samples))
