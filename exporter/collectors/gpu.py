"""The ``gpu`` collector: one set of series per GPU, from NVML.

Sample output (values from the last collection)::

    dlcourse_gpu_info{cuda_version="12.4",driver_version="550.54.15",gpu="0",name="NVIDIA A100",uuid="GPU-..."} 1
    dlcourse_gpu_up{gpu="0",uuid="GPU-..."} 1
    dlcourse_gpu_utilization_ratio{gpu="0",uuid="GPU-..."} 0.87
    dlcourse_gpu_memory_used_bytes{gpu="0",uuid="GPU-..."} 3.4359738368e+10
    dlcourse_gpu_clock_hertz{clock="sm",gpu="0",uuid="GPU-..."} 1.41e+09
    dlcourse_gpu_clocks_event_active{gpu="0",reason="sw_thermal",uuid="GPU-..."} 0
    dlcourse_gpu_ecc_errors_total{gpu="0",type="uncorrected",uuid="GPU-..."} 0
    dlcourse_gpu_xid_errors_total{gpu="0",uuid="GPU-...",xid="79"} 1
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..sources.nvml import NvmlSession
from ..sources.nvml_gpus import GpuReader, GpuReading, GpuSnapshot
from ..sources.nvml_xid import XidWatcher
from .base import Collector

GPU_LABELS = ["gpu", "uuid"]

# name -> (help, attribute of GpuReading); all plain per-GPU gauges.
SIMPLE_GAUGES = {
    "dlcourse_gpu_utilization_ratio": (
        "Fraction of the last sample period in which a kernel ran on the GPU.",
        "utilization_ratio",
    ),
    "dlcourse_gpu_memory_used_bytes": ("GPU framebuffer memory in use.", "memory_used_bytes"),
    "dlcourse_gpu_memory_total_bytes": ("GPU framebuffer memory in total.", "memory_total_bytes"),
    "dlcourse_gpu_temperature_celsius": ("GPU core temperature.", "temperature_celsius"),
    "dlcourse_gpu_power_watts": ("GPU power draw.", "power_watts"),
    "dlcourse_gpu_power_limit_watts": ("GPU enforced power limit.", "power_limit_watts"),
}

FROM_LAST = " Values come from the exporter's last collection."


class GpuCollector(Collector):
    name = "gpu"

    def __init__(self, session: NvmlSession, interval: float = 5.0) -> None:
        self.interval = interval
        self.reader = GpuReader(session)
        self.xid = XidWatcher(session)
        self.session = session

    def poll(self) -> GpuSnapshot:
        driver, cuda, gpus = self.reader.read()
        index_by_uuid = {gpu.uuid: gpu.index for gpu in gpus}
        xid_errors = {
            (index_by_uuid[uuid], uuid, xid): count
            for (uuid, xid), count in self.xid.counts().items()
            if uuid in index_by_uuid
        }
        return GpuSnapshot(driver, cuda, gpus, xid_errors)

    def close(self) -> None:
        self.session.close()

    def render(self, snapshot: GpuSnapshot | None) -> Iterator[Metric]:
        if snapshot is None:
            return
        info = GaugeMetricFamily(
            "dlcourse_gpu_info",
            "GPU identity: index, UUID, model name, driver and CUDA versions." + FROM_LAST,
            labels=GPU_LABELS + ["name", "driver_version", "cuda_version"],
        )
        up = GaugeMetricFamily(
            "dlcourse_gpu_up",
            "1 if the GPU answered NVML in the last collection, 0 if it did not (lost)."
            + FROM_LAST,
            labels=GPU_LABELS,
        )
        gauges = {
            name: GaugeMetricFamily(name, help_text + FROM_LAST, labels=GPU_LABELS)
            for name, (help_text, _) in SIMPLE_GAUGES.items()
        }
        clock = GaugeMetricFamily(
            "dlcourse_gpu_clock_hertz",
            "Current GPU clock." + FROM_LAST,
            labels=GPU_LABELS + ["clock"],
        )
        events = GaugeMetricFamily(
            "dlcourse_gpu_clocks_event_active",
            "1 while NVML reports this reason for lowering the GPU clocks (slowdown)." + FROM_LAST,
            labels=GPU_LABELS + ["reason"],
        )
        ecc = CounterMetricFamily(
            "dlcourse_gpu_ecc_errors",
            "Volatile ECC memory errors since the driver loaded." + FROM_LAST,
            labels=GPU_LABELS + ["type"],
        )
        xid = CounterMetricFamily(
            "dlcourse_gpu_xid_errors",
            "XID error events reported by the driver since the exporter started." + FROM_LAST,
            labels=GPU_LABELS + ["xid"],
        )
        for gpu in snapshot.gpus:
            labels = [str(gpu.index), gpu.uuid]
            up.add_metric(labels, 1.0 if gpu.up else 0.0)
            if not gpu.up:
                continue
            info.add_metric(labels + [gpu.name, snapshot.driver_version, snapshot.cuda_version], 1)
            _add_simple(gauges, gpu, labels)
            for name, hertz in gpu.clock_hertz.items():
                clock.add_metric(labels + [name], hertz)
            for reason, active in (gpu.clocks_event_active or {}).items():
                events.add_metric(labels + [reason], 1.0 if active else 0.0)
            for kind, count in (gpu.ecc_errors or {}).items():
                ecc.add_metric(labels + [kind], count)
        for (index, uuid, code), count in sorted(snapshot.xid_errors.items()):
            xid.add_metric([str(index), uuid, str(code)], count)
        yield info
        yield up
        yield from gauges.values()
        yield from (clock, events, ecc, xid)


def _add_simple(gauges: dict[str, GaugeMetricFamily], gpu: GpuReading, labels: list[str]) -> None:
    for name, (_, attribute) in SIMPLE_GAUGES.items():
        value = getattr(gpu, attribute)
        if value is not None:  # NotSupported: left out, not zero
            gauges[name].add_metric(labels, value)
