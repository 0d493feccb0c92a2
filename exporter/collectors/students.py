"""The ``students`` collector: GPU time per user and GPU, kernel deaths by reason, idle culls.

From the ``students`` source (``sources.students``), which also feeds each student's own
page through the API (``/api/students/<user>``, ``/api/idle``). Sample output::

    dlcourse_user_gpu_seconds_total{gpu="0",user="alice",uuid="GPU-..."} 5412.5
    dlcourse_user_gpu_memory_byte_seconds_total{gpu="0",user="alice",uuid="GPU-..."} 4.2e+13
    dlcourse_user_kernel_deaths_total{reason="oom_killer",user="alice"} 1
    dlcourse_user_kernel_deaths_total{reason="cuda_oom",user="alice"} 0
    dlcourse_user_gpu_idle_culls_total{user="alice"} 2

GPU time is counted from the exporter's start, for each (user, GPU) seen: two students on
one GPU each get their own share (``sources.gpu_time`` says how cycles are joined). Idle
culls are zero for every hub user (every user seen, without a hub); deaths by reason for
every user seen with a kernel, like ``dlcourse_user_kernel_crashes_total``, whose crashes
they split by what caused them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from ..metricdefs import counter
from ..model import DEATH_REASONS, GpuTime, StudentsSnapshot
from .base import Collector

USER_GPU = ("user", "gpu", "uuid")
GPU_SECONDS = counter(
    "dlcourse_user_gpu_seconds",
    "GPU time of the user's processes since the exporter started: their SM utilization "
    "(NVML process samples) integrated over time, in seconds of a fully busy GPU.",
    *USER_GPU,
)
MEMORY_BYTE_SECONDS = counter(
    "dlcourse_user_gpu_memory_byte_seconds",
    "GPU memory held by the user's processes, integrated over time since the exporter started.",
    *USER_GPU,
)
DEATHS = counter(
    "dlcourse_user_kernel_deaths",
    "Kernels of the user that died unexpectedly since the exporter started, by what killed "
    'them: "oom_killer", "cuda_oom", "xid" (a GPU error on its GPU), "signal" or "exit" '
    "(the same deaths as dlcourse_user_kernel_crashes_total).",
    "user",
    "reason",
)
IDLE_CULLS = counter(
    "dlcourse_user_gpu_idle_culls",
    "Kernels of the user that the idle-GPU culler shut down because they held GPU memory "
    "idle, as the culler reported them.",
    "user",
)
METRICS = (GPU_SECONDS, MEMORY_BYTE_SECONDS, DEATHS, IDLE_CULLS)


@dataclass(frozen=True)
class StudentsView:
    """What the metrics show: not the kernels' and processes' details, which change
    every cycle and go to the API only."""

    users: frozenset[str]
    kernel_users: frozenset[str]
    gpu_time: tuple[GpuTime, ...]
    death_counts: tuple[tuple[tuple[str, str], int], ...]
    idle_culls: tuple[tuple[str, int], ...]


class StudentsCollector(Collector):
    name = "students"
    description = (
        "GPU time per user and GPU, kernel deaths by reason and idle culls; each student's "
        "kernels, idle GPU memory and deaths for /api/students"
    )
    sources = ("students",)
    metrics = METRICS

    def view(self, snapshot: StudentsSnapshot) -> StudentsView:
        return StudentsView(
            snapshot.users,
            snapshot.kernel_users,
            snapshot.gpu_time,
            tuple(sorted(snapshot.death_counts.items())),
            tuple(sorted(snapshot.idle_culls.items())),
        )

    def render(self, view: StudentsView | None) -> Iterator[Metric]:
        if view is None:
            return
        seconds, byte_seconds, deaths, culls = (metric.family() for metric in METRICS)
        for use in view.gpu_time:
            labels = [use.user, str(use.gpu_index), use.gpu_uuid]
            seconds.add_metric(labels, use.busy_seconds)
            byte_seconds.add_metric(labels, use.memory_byte_seconds)
        counts = dict(view.death_counts)
        for user in sorted(view.kernel_users | {user for user, _ in counts}):
            for reason in DEATH_REASONS:
                deaths.add_metric([user, reason], counts.get((user, reason), 0))
        culled = dict(view.idle_culls)
        for user in sorted(view.users | culled.keys()):
            culls.add_metric([user], culled.get(user, 0))
        yield from (seconds, byte_seconds, deaths, culls)
