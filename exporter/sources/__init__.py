"""The sources: everything the exporter reads, each returning ``model`` snapshots.

``build_sources`` makes the ones the enabled collectors need (and what those need), in an
order where a source comes after the sources it ``needs``. A new source is its module
here and one line in ``SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from .base import Source
from .host import HostTracker
from .hub import HubClient, HubSource
from .kernels import KernelTracker
from .kubepods import PodDirectory
from .kubernetes import KubernetesClient, KubernetesSource
from .nvml_source import NvmlSource
from .owners import OwnerRules, Owners, PodOwners
from .proctable import ProcessTableSource
from .roster import SharedRoster
from .students import StudentsSource


class Shared:
    """What several sources use, made on first use: the hub's roster, the pods on this node
    (Kubernetes), and the attribution rules that read them."""

    def __init__(self, values: Mapping[str, Any], hub: bool) -> None:
        self.values = values
        self.hub = hub  # with a hub, only its users are students

    @cached_property
    def roster(self) -> SharedRoster:
        return SharedRoster(self.hub, self.values["user.prefix"])

    @cached_property
    def pods(self) -> PodDirectory:
        return PodDirectory()

    @cached_property
    def owners(self) -> OwnerRules:
        if self.values["attribution"] == "kubernetes":
            return PodOwners(self.pods, self.roster)
        return Owners(self.values["user.prefix"], self.values["user.spawner-account"], self.roster)


Factory = Callable[[Mapping[str, Any], Shared], Source]

# In dependency order: every source after those it needs.
SOURCES: dict[str, Factory] = {
    "kubernetes": lambda values, shared: KubernetesSource(
        KubernetesClient(
            values["kubernetes.api-url"],
            values["kubernetes.node-name"],
            values["kubernetes.namespace"],
            values["kubernetes.token-file"],
            values["kubernetes.ca-file"],
            values["kubernetes.user-namespaces"],
        ),
        shared.pods,
        values["collection.interval"],
    ),
    "nvml": lambda values, _: NvmlSource(values["collection.interval"]),
    "proc": lambda values, shared: ProcessTableSource(
        shared.owners, values["path.procfs"], values["collection.interval"]
    ),
    "kernels": lambda values, shared: KernelTracker(
        shared.owners,
        values["path.procfs"],
        values["kernels.exit-events"],
        values["collection.interval"],
    ),
    "host": lambda values, shared: HostTracker(
        shared.owners,
        values["path.cgroupfs"],
        Path(values["path.kmsg"]) if values["path.kmsg"] else None,
        values["collection.interval"],
    ),
    "students": lambda values, shared: StudentsSource(
        shared.owners, shared.roster, values["path.procfs"], values["collection.interval"]
    ),
    "hub": lambda values, shared: HubSource(
        HubClient(
            values["hub.url"] or "",
            values["hub.token"] or "",
            values["hub.timeout"],
            values["hub.max-users"],
        ),
        values["hub.interval"],
        shared.roster,
    ),
}


def build_sources(values: Mapping[str, Any], wanted: Collection[str]) -> list[Source]:
    """The wanted sources and the ones they need, each built once from the settings."""
    shared = Shared(values, hub="hub" in wanted)
    built: dict[str, Source] = {}

    def build(name: str) -> None:
        if name not in built:
            source = SOURCES[name](values, shared)
            for need in source.needs:  # what it takes optionally, it takes if built
                build(need)
            built[name] = source

    for name in SOURCES:
        if name in wanted:
            build(name)
    return sorted(built.values(), key=lambda source: list(SOURCES).index(source.name))
