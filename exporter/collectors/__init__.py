"""The named collectors, in the order their series appear on /metrics.

Each is switched on or off with ``--collector.<name>`` / ``--no-collector.<name>``; a new
collector is its module here, its source in ``sources/`` (listed in ``sources.SOURCES``)
and one line below.
"""

from __future__ import annotations

from .base import Collector
from .gpu import GpuCollector
from .host import HostCollector
from .hub import HubCollector
from .kernels import KernelsCollector
from .kubernetes import KubernetesCollector
from .processes import ProcessesCollector
from .students import StudentsCollector

COLLECTORS: tuple[Collector, ...] = (
    GpuCollector(),
    ProcessesCollector(),
    KernelsCollector(),
    HostCollector(),
    StudentsCollector(),
    HubCollector(),
    KubernetesCollector(),
)
