"""Reads every GPU's state through NVML into frozen dataclasses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pynvml

from .nvml import NvmlSession, optional, text

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class GpuReading:
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
    clock_hertz: dict[str, float] = field(default_factory=dict)
    clocks_event_active: dict[str, bool] | None = None
    ecc_errors: dict[str, int] | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    driver_version: str
    cuda_version: str
    gpus: tuple[GpuReading, ...]
    # (gpu index, uuid, xid) -> events seen since the exporter started
    xid_errors: dict[tuple[int, str, int], int] = field(default_factory=dict)


def format_cuda_version(version: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{version // 1000}.{version % 1000 // 10}"


def decode_clocks_event_reasons(mask: int) -> dict[str, bool]:
    return {reason: bool(mask & bit) for reason, bit in CLOCKS_EVENT_REASONS.items()}


def _clocks_event_reasons(handle: object) -> int | None:
    try:
        return pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    except pynvml.NVMLError_FunctionNotFound:
        # Drivers before 535 only know the old "throttle" name.
        return optional(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, handle)
    except pynvml.NVMLError_NotSupported:
        return None


def read_gpu(index: int, handle: object, known_uuid: str | None) -> GpuReading:
    """All fields of one GPU; a lost GPU reads as up=False under its last known UUID."""
    try:
        uuid = text(pynvml.nvmlDeviceGetUUID(handle))
        name = text(pynvml.nvmlDeviceGetName(handle))
        utilization = optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
        memory = optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
        power_mw = optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        power_limit_mw = optional(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        clocks = {
            clock: mhz * 1e6
            for clock, kind in CLOCKS.items()
            if (mhz := optional(pynvml.nvmlDeviceGetClockInfo, handle, kind)) is not None
        }
        reasons = _clocks_event_reasons(handle)
        ecc = {
            kind: count
            for kind, error_type in ECC_TYPES.items()
            if (
                count := optional(
                    pynvml.nvmlDeviceGetTotalEccErrors, handle, error_type, pynvml.NVML_VOLATILE_ECC
                )
            )
            is not None
        }
    except pynvml.NVMLError_GpuIsLost:
        return GpuReading(index=index, uuid=known_uuid or "unknown", up=False)
    return GpuReading(
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


class GpuReader:
    """Reads all GPUs; remembers each index's UUID so a lost GPU keeps its labels."""

    def __init__(self, session: NvmlSession) -> None:
        self.session = session
        self._uuids: dict[int, str] = {}

    def read(self) -> tuple[str, str, tuple[GpuReading, ...]]:
        self.session.ensure()
        driver = text(self.session.call(pynvml.nvmlSystemGetDriverVersion))
        cuda = self.session.call(pynvml.nvmlSystemGetCudaDriverVersion)
        count = self.session.call(pynvml.nvmlDeviceGetCount)
        gpus = []
        for index in range(count):
            try:
                handle = self.session.call(pynvml.nvmlDeviceGetHandleByIndex, index)
            except pynvml.NVMLError_GpuIsLost:
                gpus.append(GpuReading(index, self._uuids.get(index, "unknown"), up=False))
                continue
            reading = self.session.call(read_gpu, index, handle, self._uuids.get(index))
            if reading.up:
                self._uuids[index] = reading.uuid
            gpus.append(reading)
        return driver, format_cuda_version(cuda), tuple(gpus)
