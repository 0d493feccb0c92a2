"""The named collectors, each switched on or off with --collector.<name> / --no-collector.<name>.

A collector is added here with a factory that builds it from the configuration and the
resources collectors share (one NVML session, one owner resolver).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .collectors import gpu, host, hub, kernels, processes
from .collectors.base import Collector
from .config import Config
from .metricdefs import MetricDef
from .sources.hub import HubClient
from .sources.nvml import NvmlSession
from .sources.owners import OwnerResolver
from .sources.roster import SharedRoster

log = logging.getLogger(__name__)


class Shared:
    """Resources several collectors use, made on first use."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def nvml(self) -> NvmlSession:
        return NvmlSession()

    @cached_property
    def roster(self) -> SharedRoster:
        """The hub's users, filled by the hub collector; with a hub only they are students."""
        return SharedRoster("hub" in self.config.collectors, self.config.user_prefix)

    @cached_property
    def owners(self) -> OwnerResolver:
        return OwnerResolver(
            self.config.procfs,
            self.config.user_prefix,
            self.config.spawner_account,
            self.roster,
        )


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    description: str
    enabled_by_default: bool
    build: Callable[[Shared], Collector]
    metrics: tuple[MetricDef, ...]


COLLECTORS: list[CollectorSpec] = [
    CollectorSpec(
        "gpu",
        "GPU state from NVML",
        True,
        lambda shared: gpu.GpuCollector(shared.nvml, shared.config.interval),
        gpu.METRICS,
    ),
    CollectorSpec(
        "processes",
        "GPU memory and utilization per hub user",
        True,
        lambda shared: processes.ProcessesCollector(
            shared.nvml, shared.owners, shared.config.interval
        ),
        processes.METRICS,
    ),
    CollectorSpec(
        "kernels",
        "notebook kernels and kernel crashes per user, from /proc and process-exit events",
        True,
        lambda shared: kernels.KernelsCollector(
            shared.owners,
            shared.config.procfs,
            shared.config.interval,
            shared.config.kernel_exit_events,
        ),
        kernels.METRICS,
    ),
    CollectorSpec(
        "host",
        "CPU, memory and OOM kills per user, from cgroups, /proc and the kernel log",
        True,
        lambda shared: host.HostCollector(
            shared.owners,
            shared.config.procfs,
            shared.config.cgroupfs,
            shared.config.kmsg,
            shared.config.interval,
        ),
        host.METRICS,
    ),
    # On by default only when a hub is configured: config.load() drops it otherwise.
    CollectorSpec(
        "hub",
        "JupyterHub users, groups and servers (on when a hub is configured)",
        True,
        lambda shared: hub.HubCollector(
            HubClient(
                shared.config.hub_url or "",
                shared.config.hub_token or "",
                shared.config.hub_timeout,
                shared.config.hub_max_users,
            ),
            shared.config.hub_interval,
            roster=shared.roster,
        ),
        hub.METRICS,
    ),
]


def collector_defaults() -> dict[str, bool]:
    return {spec.name: spec.enabled_by_default for spec in COLLECTORS}


def build_collectors(config: Config) -> list[Collector]:
    shared = Shared(config)
    return [spec.build(shared) for spec in COLLECTORS if spec.name in config.collectors]
