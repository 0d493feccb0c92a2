"""Reads one GPU's state through NVML into a ``model.Gpu``, and remembers GPUs that are gone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pynvml

from ..model import Gpu
from .nvml import NvmlSession, text

T = TypeVar("T")

# A GPU gone from the device count (fallen off the bus, unbound) keeps dlcourse_gpu_up 0
# this long, so DLCourseGPULost can fire and stay firing; it returns as soon as NVML lists it.
GONE_GPU_SECONDS = 24 * 3600

# NVML's clocks event (formerly "throttle") reason bits, by the label value we publish.
CLOCKS_EVENT_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal": 0x20,
    "hw_thermal": 0x40,
    "hw_power_brake": 0x80,
    "display_clock_setting": 0x100,
}

CLOCKS = {"sm": pynvml.NVML_CLOCK_SM, "memory": pynvml.NVML_CLOCK_MEM}
ECC_TYPES = {
    "corrected": pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
    "uncorrected": pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
}


def format_cuda_version(version: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{version // 1000}.{version % 1000 // 10}"


def decode_clocks_event_reasons(mask: int) -> dict[str, bool]:
    return {reason: bool(mask & bit) for reason, bit in CLOCKS_EVENT_REASONS.items()}


class GpuFields:
    """The getters of one GPU: a field NVML does not support, or whose call fails, is None
    (failures are counted by the session); a lost GPU raises NVMLError_GpuIsLost."""

    def __init__(self, session: NvmlSession, index: int, uuid: str) -> None:
        self.session, self.index, self.uuid = session, index, uuid

    def get(self, function: Callable[..., T], *args: Any) -> T | None:
        return self.session.gpu_optional(self.index, self.uuid, function, *args)

    def clocks_event_reasons(self, handle: object) -> int | None:
        try:
            return self.session.gpu_call(
                self.index, self.uuid, pynvml.nvmlDeviceGetCurrentClocksEventReasons, handle
            )
        except pynvml.NVMLError_FunctionNotFound:
            # Drivers before 535 only know the old "throttle" name.
            return self.get(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, handle)
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            return None


def read_gpu(session: NvmlSession, index: int, handle: object, known_uuid: str | None) -> Gpu:
    """All fields of one GPU; a lost GPU, or one that cannot say who it is, reads as
    up=False under its last known UUID."""
    lost = Gpu(index=index, uuid=known_uuid or "unknown", up=False)
    try:
        uuid = text(session.gpu_call(index, lost.uuid, pynvml.nvmlDeviceGetUUID, handle))
        fields = GpuFields(session, index, uuid)
        name = text(fields.get(pynvml.nvmlDeviceGetName, handle) or "")
        utilization = fields.get(pynvml.nvmlDeviceGetUtilizationRates, handle)
        memory = fields.get(pynvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = fields.get(
            pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU
        )
        power_mw = fields.get(pynvml.nvmlDeviceGetPowerUsage, handle)
        power_limit_mw = fields.get(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        clocks = {
            clock: mhz * 1e6
            for clock, kind in CLOCKS.items()
            if (mhz := fields.get(pynvml.nvmlDeviceGetClockInfo, handle, kind)) is not None
        }
        reasons = fields.clocks_event_reasons(handle)
        ecc = {
            kind: count
            for kind, error_type in ECC_TYPES.items()
            if (
                count := fields.get(
                    pynvml.nvmlDeviceGetTotalEccErrors, handle, error_type, pynvml.NVML_VOLATILE_ECC
                )
            )
            is not None
        }
    except pynvml.NVMLError:  # lost, or no UUID: nothing else of this GPU can be trusted
        return lost
    return Gpu(
        index=index,
        uuid=uuid,
        up=True,
        name=name,
        utilization_ratio=None if utilization is None else utilization.gpu / 100.0,
        memory_used_bytes=None if memory is None else memory.used,
        memory_total_bytes=None if memory is None else memory.total,
        temperature_celsius=None if temperature is None else float(temperature),
        power_watts=None if power_mw is None else power_mw / 1000.0,
        power_limit_watts=None if power_limit_mw is None else power_limit_mw / 1000.0,
        clock_hertz=clocks,
        clocks_event_active=None if reasons is None else decode_clocks_event_reasons(reasons),
        ecc_errors=ecc or None,
    )


@dataclass(frozen=True)
class SeenGpu:
    index: int
    last_seen: float  # monotonic seconds


def with_gone_gpus(
    readings: list[Gpu], seen: dict[str, SeenGpu], now: float, keep_for: float
) -> tuple[list[Gpu], dict[str, SeenGpu]]:
    """readings plus, for every GPU seen in the last keep_for seconds that is missing now
    (gone from the device count), an up=False reading under its UUID and last index."""
    seen = {uuid: gpu for uuid, gpu in seen.items() if now - gpu.last_seen <= keep_for}
    present = {reading.uuid for reading in readings}
    for reading in readings:
        if reading.up:
            seen[reading.uuid] = SeenGpu(reading.index, now)
    gone = [
        Gpu(gpu.index, uuid, up=False) for uuid, gpu in sorted(seen.items()) if uuid not in present
    ]
    return readings + gone, seen
