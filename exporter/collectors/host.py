"""The ``host`` collector: CPU, memory and OOM kills per hub user.

From the user's own cgroup (TLJH: ``jupyter-<name>.service``) where there is one, else
summed over the user's processes in the process table; OOM kills also from the kernel log
(the ``host`` source: ``sources.host`` says who is reported). Sample output::

    dlcourse_user_cpu_seconds_total{user="alice"} 1234.5
    dlcourse_user_memory_used_bytes{user="alice"} 2.147483648e+09
    dlcourse_user_memory_limit_bytes{user="alice"} 4.294967296e+09
    dlcourse_user_oom_kills_total{user="alice"} 1
    dlcourse_user_host_source_info{source="cgroup",user="alice"} 1
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric

from ..metricdefs import counter, gauge
from ..model import HostSnapshot
from ..options import Option
from .base import Collector

CPU = counter(
    "dlcourse_user_cpu_seconds",
    "CPU time used by the user's processes (their cgroup where there is one).",
    "user",
)
MEMORY_USED = gauge(
    "dlcourse_user_memory_used_bytes",
    "Memory of the user's processes: the cgroup's charge (page cache included) where there is "
    "one, else the sum of their resident sets.",
    "user",
)
MEMORY_LIMIT = gauge(
    "dlcourse_user_memory_limit_bytes",
    "Memory limit of the user's cgroup, where one is set.",
    "user",
)
OOM_KILLS = counter(
    "dlcourse_user_oom_kills",
    "Processes of the user killed by the out-of-memory killer (cgroup counter, else the kernel "
    "log) since the exporter started.",
    "user",
)
SOURCE = gauge(
    "dlcourse_user_host_source_info",
    'Where the user\'s CPU and memory come from: "cgroup" or "proc".',
    "user",
    "source",
)
METRICS = (CPU, MEMORY_USED, MEMORY_LIMIT, OOM_KILLS, SOURCE)


class HostCollector(Collector):
    name = "host"
    description = "CPU, memory and OOM kills per user, from cgroups, /proc and the kernel log"
    sources = ("host",)
    metrics = METRICS
    options = (
        Option("path.cgroupfs", "cgroup filesystem mount point", "/sys/fs/cgroup", Path),
        Option(
            "path.kmsg",
            "kernel log device read for OOM kills (needs CAP_SYSLOG); empty to not read it",
            "/dev/kmsg",
        ),
    )

    def render(self, snapshot: HostSnapshot | None) -> Iterator[Metric]:
        if snapshot is None:
            return
        cpu, used, limit, oom, source = (m.family() for m in METRICS)
        for host in snapshot.users:
            cpu.add_metric([host.user], host.cpu_seconds)
            used.add_metric([host.user], host.memory_used_bytes)
            if host.memory_limit_bytes is not None:
                limit.add_metric([host.user], host.memory_limit_bytes)
            oom.add_metric([host.user], host.oom_kills)
            source.add_metric([host.user, host.source], 1)
        yield from (cpu, used, limit, oom, source)
