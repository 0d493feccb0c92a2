"""The hub's pre_spawn_hook that gives each student's server one GPU (docs/gpu-assignment.md).

``jupyterhub_config.d/dlcourse-gpus.py`` (written by the installer) sets it as
``c.Spawner.pre_spawn_hook``; JupyterHub awaits it before every spawn (jupyterhub 5
``user.py``, ``User.spawn``: ``await maybe_future(spawner.run_pre_spawn_hook())``). It runs in
the hub's process, in TLJH's hub environment: stdlib and dlcourse's stdlib-only modules.

- The GPU goes into the server's environment as ``CUDA_VISIBLE_DEVICES=<GPU uuid>`` (CUDA
  takes nvidia-smi's UUIDs there: CUDA Programming Guide, 5.2 "CUDA Environment Variables",
  docs.nvidia.com/cuda/cuda-programming-guide/05-appendices/environment-variables.html),
  so cuda:0 in the notebook is that GPU whatever the numbering. The exporter reads it back from the
  server process's initial environment (``dlcourse_user_gpu_assigned``).
- Staff (hub admins and the staff group) and the policy ``all`` get every GPU: no variable.
- A running server keeps its GPU: the hook runs only when a server starts, and TLJH keeps
  servers running across hub restarts (``cleanup_servers = False``). Which GPUs the other
  running servers hold comes from the exporter (what their processes' environments say),
  plus this hub's own choices of the last minutes, which the exporter may not see yet.
- Strict mode adds ``DevicePolicy=closed`` and ``DeviceAllow=`` for the server's own
  /dev/nvidiaN, the control devices and terminals to SystemdSpawner's unit properties.
- Nothing here may stop a spawn: any failure (exporter down, bad answer, a bug) gives the
  server every GPU, as without dlcourse, and logs one line saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dlcourse_installer.gpu_load import ClassGpus, ExporterUnavailable, read_class_gpus
from dlcourse_installer.gpu_policy import DEFAULT_POLICY, POLICIES, Choice, GpuLoad, choose
from dlcourse_installer.nvidia_devices import DRIVER_PROC, device_minors

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# A choice of this hub counts for that long even while the exporter does not list it yet
# (its /proc cycle, and its hub poll for a first-time user, take up to ~20 s).
RECENT_SECONDS = 120.0
STRICT_PROPERTIES = ("DevicePolicy", "DeviceAllow")
# Devices every CUDA program opens besides its GPU (NVIDIA driver README, "Installing the
# NVIDIA driver": device files), and what a JupyterLab terminal needs under a closed policy
# (systemd.resource-control(5), DeviceAllow=: "char-pts" is every pseudo TTY).
SHARED_DEVICES = (
    "/dev/nvidiactl rw",
    "/dev/nvidia-uvm rw",
    "/dev/nvidia-uvm-tools rw",
    "char-pts rw",
    "/dev/ptmx rw",
    "/dev/tty rw",
)


@dataclass(frozen=True)
class Settings:
    policy: str = DEFAULT_POLICY
    strict: bool = False


def settings_from_tljh(config: Mapping[str, Any]) -> tuple[Settings, list[str]]:
    """The ``dlcourse`` section of TLJH's config.yaml (``tljh-config set dlcourse.gpu_policy
    round-robin``), and one line per bad value (which then keeps its default)."""
    section = config.get("dlcourse") or {}
    errors = []
    policy = section.get("gpu_policy", DEFAULT_POLICY)
    if policy not in POLICIES:
        errors.append(
            f"tljh-config dlcourse.gpu_policy {policy!r} is not one of {', '.join(POLICIES)}: "
            f"using {DEFAULT_POLICY}"
        )
        policy = DEFAULT_POLICY
    strict = section.get("gpu_strict", False)
    if not isinstance(strict, bool):
        errors.append(f"tljh-config dlcourse.gpu_strict {strict!r} is not true or false: off")
        strict = False
    return Settings(policy, strict), errors


def read_tljh_config(path: str) -> tuple[Mapping[str, Any], list[str]]:
    """TLJH's config.yaml as a mapping (empty when absent). PyYAML is in TLJH's hub
    environment: JupyterHub 5 requires jupyter_events, which requires PyYAML."""
    import yaml

    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return {}, []
    except (OSError, yaml.YAMLError) as exc:
        return {}, [f"{path}: {type(exc).__name__}: {exc}"]
    if not isinstance(config, dict):
        return {}, [f"{path}: not a mapping"]
    return config, []


class UnitPropertyValues(list):
    """Several values of one unit property (one device per ``DeviceAllow=``).

    SystemdSpawner documents list values in ``unit_extra_properties`` and its systemd.py
    turns a list into one ``--property`` each, but ``SystemdSpawner.start`` first passes every
    value through ``str.format`` (``_expand_user_vars``; jupyterhub-systemdspawner 1.0.2,
    systemdspawner/systemdspawner.py), which a plain list lacks. These values have nothing
    to expand, so format() answers the list itself."""

    def format(self, *args: object, **kwargs: object) -> UnitPropertyValues:
        return self


def strict_unit_properties(minor: int) -> dict[str, Any]:
    """Only this GPU's device node, the shared ones and the standard pseudo devices
    (DevicePolicy=closed; systemd.resource-control(5))."""
    return {
        "DevicePolicy": "closed",
        "DeviceAllow": UnitPropertyValues([f"/dev/nvidia{minor} rw", *SHARED_DEVICES]),
    }


class GpuAssigner:
    """c.Spawner.pre_spawn_hook; one per hub process."""

    def __init__(
        self,
        settings: Settings,
        *,
        staff_group: str,
        roster_gpus: Mapping[str, int],
        read_gpus: Callable[[], ClassGpus],
        driver_proc: str = DRIVER_PROC,
    ) -> None:
        self.settings = settings
        self.staff_group = staff_group
        self.roster_gpus = dict(roster_gpus)
        self.read_gpus = read_gpus
        self.driver_proc = driver_proc
        self._made: dict[str, tuple[str, float]] = {}  # user -> (uuid, monotonic time)
        self._known_gpus: tuple[GpuLoad, ...] = ()  # the last GPUs the exporter listed
        self._turn: int | None = None  # round-robin's next turn

    @classmethod
    def from_tljh_config(
        cls, config_yaml: str, *, exporter_url: str, token_file: str, **kwargs: Any
    ) -> GpuAssigner:
        """What dlcourse-gpus.py builds from TLJH's config.yaml; bad settings, or a file that
        cannot be read, are logged one line each and leave the defaults."""
        config, errors = read_tljh_config(config_yaml)
        settings, bad = settings_from_tljh(config)
        for error in [*errors, *bad]:
            logging.getLogger("JupyterHub").error("dlcourse GPU: %s", error)
        return cls(settings, read_gpus=lambda: read_class_gpus(exporter_url, token_file), **kwargs)

    async def __call__(self, spawner: Any) -> None:
        name = spawner.user.name
        try:
            choice = await self.choose_for(spawner.user)
            minor = self.minor(choice.gpu) if self.settings.strict and choice.gpu else None
        except Exception as exc:  # a bug or a surprise must not stop the spawn
            choice, minor = Choice(None, f"failed ({type(exc).__name__}: {exc})"), None
        apply(spawner, choice, minor)
        gpu = choice.gpu
        where = "every GPU" if gpu is None else f"GPU {gpu.index} ({gpu.uuid})"
        strict = f", strict: /dev/nvidia{minor} only" if minor is not None else ""
        if self.settings.strict and gpu is not None and minor is None:
            strict = ", not strict: the driver does not list this GPU's device minor"
        spawner.log.info("dlcourse GPU: %s gets %s: %s%s", name, where, choice.why, strict)

    async def choose_for(self, user: Any) -> Choice:
        if user.admin or self.staff_group in {group.name for group in user.groups}:
            return Choice(None, "staff")
        if self.settings.policy == "all":
            return Choice(None, "policy all")
        try:
            seen = await asyncio.to_thread(self.read_gpus)
            self._known_gpus = seen.gpus
        except ExporterUnavailable as exc:
            if not self._known_gpus:
                return Choice(None, f"the exporter cannot say which GPUs there are ({exc})")
            seen = ClassGpus(self._known_gpus, {})  # their load is unknown: counts only
        now = time.monotonic()
        recent = {u: uuid for u, (uuid, t) in self._made.items() if now - t < RECENT_SECONDS}
        assigned = {**recent, **seen.assigned}
        assigned.pop(user.name, None)  # this user's server is starting anew
        if self._turn is None:
            self._turn = len(assigned)  # after a hub restart, round-robin carries on
        choice = choose(
            self.settings.policy, user.name, seen.gpus, assigned, self.roster_gpus, self._turn
        )
        if choice.gpu is not None:
            self._made[user.name] = (choice.gpu.uuid, now)
            self._turn += 1
        return choice

    def minor(self, gpu: GpuLoad) -> int | None:
        return device_minors(self.driver_proc).get(gpu.uuid)


def apply(spawner: Any, choice: Choice, minor: int | None) -> None:
    """The choice into the spawner: a new dict each time, since a configured dict may be
    shared by every spawner of the hub."""
    environment = {k: v for k, v in spawner.environment.items() if k != VISIBLE_DEVICES}
    if choice.gpu is not None:
        environment[VISIBLE_DEVICES] = choice.gpu.uuid
    spawner.environment = environment
    if hasattr(spawner, "unit_extra_properties"):  # SystemdSpawner (TLJH's)
        properties = {
            k: v for k, v in spawner.unit_extra_properties.items() if k not in STRICT_PROPERTIES
        }
        if minor is not None:
            properties.update(strict_unit_properties(minor))
        spawner.unit_extra_properties = properties
