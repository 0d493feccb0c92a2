"""The ``gpu`` collector: one set of series per GPU, from NVML.

Sample output (values from the last collection)::

    dlcourse_gpu_info{cuda_version="12.4",driver_version="550",gpu="0",name="A100",uuid="GPU-1"} 1
    dlcourse_gpu_up{gpu="0",uuid="GPU-1"} 1
    dlcourse_gpu_utilization_ratio{gpu="0",uuid="GPU-1"} 0.87
    dlcourse_gpu_memory_used_bytes{gpu="0",uuid="GPU-1"} 3.4359738368e+10
    dlcourse_gpu_clock_hertz{clock="sm",gpu="0",uuid="GPU-1"} 1.41e+09
    dlcourse_gpu_clocks_event_active{gpu="0",reason="sw_thermal",uuid="GPU-1"} 0
    dlcourse_gpu_ecc_errors_total{gpu="0",type="uncorrected",uuid="GPU-1"} 0
    dlcourse_gpu_xid_errors_total{gpu="0",uuid="GPU-1",xid="79"} 1
    dlcourse_gpu_nvml_errors_total{call="GetTemperature",gpu="0",uuid="GPU-1"} 2

A GPU seen earlier that is lost, or gone from the device count, keeps ``dlcourse_gpu_up 0``
under its UUID (see ``sources.nvml_gpus``). From the ``nvml`` source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from prometheus_client.metrics_core import Metric

from ..metricdefs import MetricDef, counter, gauge
from ..model import NvmlSnapshot
from .base import Collector

GPU = ("gpu", "uuid")

INFO = gauge(
    "dlcourse_gpu_info",
    "GPU identity: index, UUID, model name, driver and CUDA versions.",
    *GPU,
    "name",
    "driver_version",
    "cuda_version",
)
UP = gauge(
    "dlcourse_gpu_up",
    "1 if the GPU answered NVML in the last collection, 0 if not (lost, or gone from the "
    "device count).",
    *GPU,
)
# Plain per-GPU gauges, by the model.Gpu attribute they show.
GAUGES: dict[str, MetricDef] = {
    "utilization_ratio": gauge(
        "dlcourse_gpu_utilization_ratio",
        "Fraction of the last sample period in which a kernel ran on the GPU.",
        *GPU,
    ),
    "memory_used_bytes": gauge("dlcourse_gpu_memory_used_bytes", "GPU memory in use.", *GPU),
    "memory_total_bytes": gauge("dlcourse_gpu_memory_total_bytes", "GPU memory in total.", *GPU),
    "temperature_celsius": gauge("dlcourse_gpu_temperature_celsius", "GPU core temperature.", *GPU),
    "power_watts": gauge("dlcourse_gpu_power_watts", "GPU power draw.", *GPU),
    "power_limit_watts": gauge("dlcourse_gpu_power_limit_watts", "GPU enforced power limit.", *GPU),
}
CLOCK = gauge("dlcourse_gpu_clock_hertz", "Current GPU clock (sm, memory).", *GPU, "clock")
CLOCKS_EVENT = gauge(
    "dlcourse_gpu_clocks_event_active",
    "1 while NVML reports this reason for lowering the GPU clocks (slowdown).",
    *GPU,
    "reason",
)
ECC = counter(
    "dlcourse_gpu_ecc_errors",
    "Volatile ECC memory errors since the driver loaded (corrected, uncorrected).",
    *GPU,
    "type",
)
XID = counter(
    "dlcourse_gpu_xid_errors",
    "XID error events reported by the driver since the exporter started.",
    *GPU,
    "xid",
)
NVML_ERRORS = counter(
    "dlcourse_gpu_nvml_errors",
    "NVML calls for the GPU that failed since the exporter started, by the function's short "
    "name (a failed call leaves that GPU's field or series out; NotSupported is not counted).",
    *GPU,
    "call",
)
METRICS = (INFO, UP, *GAUGES.values(), CLOCK, CLOCKS_EVENT, ECC, XID, NVML_ERRORS)


class GpuCollector(Collector):
    name = "gpu"
    description = "GPU state from NVML"
    sources = ("nvml",)
    metrics = METRICS

    def view(self, nvml: NvmlSnapshot) -> NvmlSnapshot:
        # Without the process lists: a process's utilization changes nothing here.
        return replace(nvml, processes=())

    def render(self, snapshot: NvmlSnapshot | None) -> Iterator[Metric]:
        if snapshot is None:
            return
        families = {metric: metric.family() for metric in METRICS}
        for gpu in snapshot.gpus:
            labels = [str(gpu.index), gpu.uuid]
            families[UP].add_metric(labels, 1.0 if gpu.up else 0.0)
            if not gpu.up:
                continue
            families[INFO].add_metric(
                labels + [gpu.name, snapshot.driver_version, snapshot.cuda_version], 1
            )
            for attribute, metric in GAUGES.items():
                value = getattr(gpu, attribute)
                if value is not None:  # NotSupported: left out, not zero
                    families[metric].add_metric(labels, value)
            for clock, hertz in gpu.clock_hertz.items():
                families[CLOCK].add_metric(labels + [clock], hertz)
            for reason, active in (gpu.clocks_event_active or {}).items():
                families[CLOCKS_EVENT].add_metric(labels + [reason], 1.0 if active else 0.0)
            for kind, count in (gpu.ecc_errors or {}).items():
                families[ECC].add_metric(labels + [kind], count)
        for (index, uuid, code), count in sorted(snapshot.xid_errors.items()):
            families[XID].add_metric([str(index), uuid, str(code)], count)
        for (index, uuid, call), count in sorted(snapshot.nvml_errors.items()):
            families[NVML_ERRORS].add_metric([str(index), uuid, call], count)
        yield from families.values()
