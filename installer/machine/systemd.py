"""systemctl, one verb each, and unit files."""

from __future__ import annotations

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.machine import files
from dlcourse_installer.machine.host import Host


def is_active(host: Host, unit: str) -> bool:
    return host.query(["systemctl", "is-active", "--quiet", unit]).ok


def is_enabled(host: Host, unit: str) -> bool:
    return host.query(["systemctl", "is-enabled", "--quiet", unit]).ok


def reload_daemon(host: Host) -> None:
    host.run(["systemctl", "daemon-reload"])


def enable_now(host: Host, unit: str) -> None:
    host.run(["systemctl", "enable", "--now", unit])


def restart(host: Host, unit: str) -> None:
    host.run(["systemctl", "restart", unit])


def disable(host: Host, unit: str) -> None:
    host.run(["systemctl", "disable", unit])


def reboot(host: Host) -> None:
    host.run(["systemctl", "reboot"])


def boot_id(host: Host) -> str:
    """The kernel's id of this boot: it changes at every reboot."""
    return (host.read_text("/proc/sys/kernel/random/boot_id") or "").strip()


def install_unit(host: Host, paths: Paths, name: str, content: str) -> bool:
    """Write a unit (or drop-in, ``name.d/x.conf``); reload systemd if it changed."""
    changed = files.ensure_file(host, paths.unit(name), content)
    if changed:
        reload_daemon(host)
    return changed


def ensure_running(host: Host, unit: str, *, restart_needed: bool = False) -> None:
    """Enabled at boot and running; restarted when its configuration changed."""
    if not is_enabled(host, unit) or not is_active(host, unit):
        enable_now(host, unit)
    elif restart_needed:
        restart(host, unit)
