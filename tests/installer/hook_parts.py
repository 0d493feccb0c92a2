"""What the GPU hook meets in the hub, for the unit tests: the spawner JupyterHub hands it
(its user, environment, unit properties and log), the driver's /proc files, and copies of
the configured hook made the way JupyterHub makes them. The hook in a real hub:
tests/tljh_conformance/test_gpu_assignment.py."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from jupyterhub.spawner import Spawner as HubSpawner
from traitlets.config import Config

import fakenvml
from dlcourse_installer.hub.gpu_hook import GpuAssigner, Settings

GIB = 1 << 30
UUIDS = tuple(f"GPU-{i}" for i in range(3))


@dataclass
class Group:
    name: str


@dataclass
class User:
    name: str
    admin: bool = False
    groups: list[Group] = field(default_factory=list)


@dataclass
class Spawner:
    user: User
    environment: dict[str, str] = field(default_factory=lambda: {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    unit_extra_properties: dict = field(default_factory=dict)
    log: logging.Logger = logging.getLogger("test-hub")


def write_driver_proc(folder: Path, uuids=UUIDS, minors=None) -> str:
    """The stand-in GPUs' driver /proc files (these tests' UUIDs unless given)."""
    return fakenvml.write_driver_proc(folder, uuids, minors)


def assigner(read_gpus, driver_proc: str, policy="least-loaded", strict=False, roster=None):
    return GpuAssigner(
        Settings(policy, strict), staff_group="instructors", roster_gpus=roster or {},
        read_gpus=read_gpus, driver_proc=driver_proc,
    )  # fmt: skip


def copies_per_spawner(hook: GpuAssigner, count: int) -> list[GpuAssigner]:
    """The hook as each Spawner holds it: JupyterHub builds every Spawner with the hub's
    config, and traitlets deep-copies a configured value into each instance."""
    config = Config()
    config.Spawner.pre_spawn_hook = hook
    return [HubSpawner(config=config).pre_spawn_hook for _ in range(count)]


def spawn(hook: GpuAssigner, user: User) -> Spawner:
    spawner = Spawner(user)
    asyncio.run(hook(spawner))
    return spawner


def spawn_at_once(hooks: list[GpuAssigner], names: list[str]) -> list[Spawner]:
    """One spawn per name, all started at the same moment in one event loop (the hub's)."""
    return spawn_bursts((hooks, names))[0]


def spawn_bursts(*bursts: tuple[list[GpuAssigner], list[str]]) -> list[list[Spawner]]:
    """Bursts of simultaneous spawns, one after the other, in one event loop."""
    spawners = [[Spawner(User(name)) for name in names] for _, names in bursts]

    async def one_by_one() -> None:
        for (hooks, _), burst in zip(bursts, spawners, strict=True):
            await asyncio.gather(*(hook(s) for hook, s in zip(hooks, burst, strict=True)))

    asyncio.run(one_by_one())
    return spawners


def given(spawners: list[Spawner]) -> list[str | None]:
    return [s.environment.get("CUDA_VISIBLE_DEVICES") for s in spawners]
