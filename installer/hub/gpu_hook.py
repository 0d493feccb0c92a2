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
- The GPUs are those the driver lists (nvidia_devices.py). The exporter supplies only their
  load: memory in use, and which GPU the other running servers hold (what their processes'
  environments say). GPUs it names that the driver does not list count for nothing.
- A running server keeps its GPU: the hook runs only when a server starts, and TLJH keeps
  servers running across hub restarts (``cleanup_servers = False``). The hub's own choices of
  the last minutes count too, since the exporter sees a new server only seconds after it
  starts; spawns that run at the same moment take their decisions one after the other.
- Strict mode adds ``DevicePolicy=closed`` and ``DeviceAllow=`` for the server's own
  /dev/nvidiaN, the control devices and terminals to SystemdSpawner's unit properties.
- Nothing here may stop a spawn. When no GPU can be chosen (no driver list, a bug), the
  server gets every GPU, as without dlcourse, or in strict mode none at all (strict mode
  never fails open); one line in the hub's log says which and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dlcourse_installer.hub.gpu_load import ClassGpus, ExporterUnavailable, read_class_gpus
from dlcourse_installer.hub.gpu_policy import DEFAULT_POLICY, POLICIES, Choice, GpuLoad, choose
from dlcourse_installer.hub.nvidia_devices import DRIVER_PROC, DriverGpu, driver_gpus

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# A choice of this hub counts for that long even while the exporter does not list it yet
# (its /proc cycle, and its hub poll for a first-time user, take up to ~20 s).
RECENT_SECONDS = 120.0
# One answer of the exporter serves the spawns of this long: a class that starts at once asks
# once, and an exporter that does not answer costs the class one deadline, not one each.
FRESH_SECONDS = 2.0
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
    if not isinstance(section, Mapping):  # `tljh-config set dlcourse round-robin`
        return Settings(), [
            f"tljh-config dlcourse {section!r} is not a mapping (set dlcourse.gpu_policy and "
            "dlcourse.gpu_strict): using the defaults"
        ]
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


def strict_unit_properties(minor: int | None) -> dict[str, Any]:
    """Only this GPU's device node (none for None), the shared ones and the standard pseudo
    devices (DevicePolicy=closed; systemd.resource-control(5))."""
    own = [] if minor is None else [f"/dev/nvidia{minor} rw"]
    return {
        "DevicePolicy": "closed",
        "DeviceAllow": UnitPropertyValues([*own, *SHARED_DEVICES]),
    }


@dataclass
class AssignmentState:
    """What the hook remembers between spawns, one per hub process."""

    decide: asyncio.Lock = field(default_factory=asyncio.Lock)
    made: dict[str, tuple[str, float]] = field(default_factory=dict)  # user -> (uuid, time)
    turn: int | None = None  # round-robin's next turn
    seen: ClassGpus | ExporterUnavailable | None = None  # the exporter's last answer
    seen_at: float = 0.0  # when (monotonic)


# JupyterHub builds every Spawner with the hub's configuration (jupyterhub 5.5.4, user.py,
# User._new_spawner: ``config=self.settings.get('config')``), and traitlets sets each
# configured value on the new instance as a deep copy (traitlets 5.16.1,
# config/configurable.py, Configurable._load_config: ``setattr(self, name,
# deepcopy(config_value))``). Each spawn thus calls its own copy of the configured
# GpuAssigner, and state kept on it would start empty every time: six students starting at
# once all got GPU 0. The state lives here instead, under a key the copies share.
_STATES: dict[str, AssignmentState] = {}


class GpuAssigner:
    """c.Spawner.pre_spawn_hook. Holds only its settings; its memory is in _STATES."""

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
        self.state_key = uuid.uuid4().hex
        _STATES[self.state_key] = AssignmentState()

    @property
    def state(self) -> AssignmentState:
        return _STATES[self.state_key]

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
        try:
            choice = await self.choose_for(spawner.user)
        except Exception as exc:  # a bug or a surprise must not stop the spawn
            choice = Choice(None, f"failed ({type(exc).__name__}: {exc})", failed=True)
        strict = self.settings.strict and (choice.gpu is not None or choice.failed)
        apply(spawner, choice, strict)
        name, gpu, why = spawner.user.name, choice.gpu, " ".join(choice.why.split())
        if gpu is not None:
            limit = f", strict: /dev/nvidia{gpu.minor} only" if strict else ""
            spawner.log.info("dlcourse GPU: %s gets GPU %s (%s): %s%s", name, gpu.index,
                             gpu.uuid, why, limit)  # fmt: skip
        elif not choice.failed:
            spawner.log.info("dlcourse GPU: %s gets every GPU: %s", name, why)
        else:
            where = "no GPU (strict mode)" if strict else "every GPU"
            spawner.log.warning("dlcourse GPU: %s gets %s: %s", name, where, why)

    async def choose_for(self, user: Any) -> Choice:
        if user.admin or self.staff_group in {group.name for group in user.groups}:
            return Choice(None, "staff")
        if self.settings.policy == "all":
            return Choice(None, "policy all")
        state = self.state
        # Held for the decision only, not for the spawn: each spawn sees those before it.
        async with state.decide:
            driver = await asyncio.to_thread(driver_gpus, self.driver_proc)
            if not driver:
                return Choice(None, f"the driver lists no GPU in {self.driver_proc}", failed=True)
            gpus, assigned, note = with_load(driver, await self.exporter_view(state))
            now = time.monotonic()
            recent = {u: g for u, (g, t) in state.made.items() if now - t < RECENT_SECONDS}
            assigned = {**assigned, **recent}  # this hub's choices are the newest
            assigned.pop(user.name, None)  # this user's server is starting anew
            if state.turn is None:
                state.turn = len(assigned)  # after a hub restart, round-robin carries on
            choice = choose(
                self.settings.policy, user.name, gpus, assigned, self.roster_gpus, state.turn
            )
            if choice.gpu is not None:
                state.made[user.name] = (choice.gpu.uuid, now)
                state.turn += 1
        return Choice(choice.gpu, choice.why + note, choice.failed)

    async def exporter_view(self, state: AssignmentState) -> ClassGpus | ExporterUnavailable:
        """The exporter's last answer while fresh, else a new one (or why there is none)."""
        if state.seen is None or time.monotonic() - state.seen_at >= FRESH_SECONDS:
            try:
                state.seen = await asyncio.to_thread(self.read_gpus)
            except ExporterUnavailable as exc:
                state.seen = exc
            state.seen_at = time.monotonic()
        return state.seen


def with_load(
    driver: tuple[DriverGpu, ...], seen: ClassGpus | ExporterUnavailable
) -> tuple[tuple[GpuLoad, ...], dict[str, str], str]:
    """The driver's GPUs with the exporter's load where it has some, the assignments on
    them, and a note for the log when the exporter could not be asked."""
    if isinstance(seen, ExporterUnavailable):
        gpus = tuple(GpuLoad(d.index, d.uuid, minor=d.minor) for d in driver)
        note = f" (the exporter cannot be asked: {seen}; counting this hub's own choices only)"
        return gpus, {}, note
    load = {g.uuid: g for g in seen.gpus}
    gpus = tuple(
        replace(load[d.uuid], index=d.index, minor=d.minor) if d.uuid in load
        else GpuLoad(d.index, d.uuid, up=False, minor=d.minor)  # the exporter's NVML lacks it
        for d in driver
    )  # fmt: skip
    listed = {d.uuid for d in driver}
    return gpus, {u: g for u, g in seen.assigned.items() if g in listed}, ""


def apply(spawner: Any, choice: Choice, strict: bool) -> None:
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
        if strict:
            properties.update(strict_unit_properties(choice.gpu.minor if choice.gpu else None))
        spawner.unit_extra_properties = properties
