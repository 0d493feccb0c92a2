"""Idle GPU memory: the lecturer's thresholds and the one decision, warn or shut down.

The thresholds live in one place, the ``dlcourse`` section of TLJH's config.yaml, and this
module alone reads them and decides; the culler service (``dlcourse_culler``) and the
students' page (``dlcourse_status.student``) both use it, so what the page announces is what
the culler does. It runs in the hub's environment (stdlib only; the caller reads the YAML).

    sudo tljh-config set dlcourse.gpu_idle_cull true          # off unless turned on
    sudo tljh-config set dlcourse.gpu_idle_min_bytes 2147483648   # default 1 GiB
    sudo tljh-config set dlcourse.gpu_idle_warn 20            # minutes at 0 % before the warning
    sudo tljh-config set dlcourse.gpu_idle_grace 10           # minutes after it before the shutdown
    sudo tljh-config reload hub

tljh-config stores ``20`` as an integer and ``0.5`` as a float (tljh/config.py
``parse_value``, TLJH 2.0.0), so minutes may be fractions.

The exporter says since when a kernel has held GPU memory at 0 % utilization
(``gpu_idle_since``; any activity resets it). A kernel is *warned* once it has been idle for
``gpu_idle_warn`` and *due* ``gpu_idle_grace`` later. The culler shuts a due kernel down only
after it has itself seen the warning stand for the whole grace, so a culler that starts late
(turned on, or restarted with the hub) never shuts a kernel down without a full grace first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

GIB = 1024**3
SECTION = "dlcourse"


@dataclass(frozen=True)
class IdleSettings:
    cull: bool = False
    min_bytes: int = GIB
    warn_seconds: float = 20 * 60.0
    grace_seconds: float = 10 * 60.0


Phase = Literal["active", "idle", "warned", "due"]


@dataclass(frozen=True)
class Verdict:
    """What the thresholds say of one kernel now. ``warn_at`` and ``due_at`` are unix times
    (None while the kernel is active); ``seconds_left`` until ``due_at``, never negative."""

    phase: Phase
    warn_at: float | None = None
    due_at: float | None = None
    seconds_left: float | None = None

    @property
    def warned(self) -> bool:
        return self.phase in ("warned", "due")


def settings_from_tljh(config: Mapping[str, Any]) -> tuple[IdleSettings, list[str]]:
    """The thresholds from TLJH's config.yaml (parsed), and one line per bad value, which then
    keeps its default."""
    section = config.get(SECTION) or {}
    if not isinstance(section, Mapping):
        return IdleSettings(), [f"tljh-config {SECTION} is not a section: the defaults apply"]
    defaults, errors = IdleSettings(), []

    def minutes(key: str, default_seconds: float) -> float:
        value = section.get(key, default_seconds / 60)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value > 0)
        ):
            errors.append(
                f"tljh-config {SECTION}.{key} {value!r} is not a positive number of minutes: "
                f"using {default_seconds / 60:g}"
            )
            return default_seconds
        return float(value) * 60

    cull = section.get("gpu_idle_cull", defaults.cull)
    if not isinstance(cull, bool):
        errors.append(f"tljh-config {SECTION}.gpu_idle_cull {cull!r} is not true or false: off")
        cull = False
    min_bytes = section.get("gpu_idle_min_bytes", defaults.min_bytes)
    if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 1:
        errors.append(
            f"tljh-config {SECTION}.gpu_idle_min_bytes {min_bytes!r} is not a positive whole "
            f"number of bytes: using {defaults.min_bytes}"
        )
        min_bytes = defaults.min_bytes
    settings = IdleSettings(
        cull=cull,
        min_bytes=min_bytes,
        warn_seconds=minutes("gpu_idle_warn", defaults.warn_seconds),
        grace_seconds=minutes("gpu_idle_grace", defaults.grace_seconds),
    )
    return settings, errors


def judge(
    memory_bytes: int, idle_since: float | None, now: float, settings: IdleSettings
) -> Verdict:
    """The phase of a kernel holding ``memory_bytes`` of GPU memory, at 0 % since
    ``idle_since`` (None: it used the GPU in the exporter's last window)."""
    if idle_since is None or memory_bytes < settings.min_bytes:
        return Verdict("active")
    warn_at = idle_since + settings.warn_seconds
    due_at = warn_at + settings.grace_seconds
    left = max(0.0, due_at - now)
    phase: Phase = "idle" if now < warn_at else "warned" if now < due_at else "due"
    return Verdict(phase, warn_at, due_at, left)


def culler_may_shut_down(
    verdict: Verdict, first_seen_warned: float, now: float, settings: IdleSettings
) -> bool:
    """Due, and the culler has seen this idle spell warned for a whole grace."""
    return verdict.phase == "due" and now - first_seen_warned >= settings.grace_seconds
