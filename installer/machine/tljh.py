"""TLJH's own tools: tljh-config and its environments, one verb each."""

from __future__ import annotations

import json

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.machine import releases
from dlcourse_installer.machine.host import Host

PASSWORDS = "dlcourse_installer.hub.hub_passwords"

# TLJH's hub environment has PyYAML; the installer is stdlib-only, so it asks that Python
# to turn config.yaml into JSON rather than parse YAML itself.
_SHOW = (
    "import json, sys, yaml; p = sys.argv[1]\n"
    "try:\n    d = yaml.safe_load(open(p)) or {}\nexcept FileNotFoundError:\n    d = {}\n"
    "print(json.dumps(d))"
)


def is_installed(host: Host, paths: Paths) -> bool:
    return host.exists(paths.tljh_config_cmd) and host.exists(f"{paths.user_env}/bin/python")


def release(host: Host, paths: Paths) -> str | None:
    """The TLJH release in the hub environment (its distribution is the-littlest-jupyterhub,
    setup.py of TLJH 2.0.0); None before TLJH is installed."""
    found = releases.installed(host, paths.hub_env, "the_littlest_jupyterhub")
    return found["version"] if found else None


def config(host: Host, paths: Paths) -> dict:
    result = host.query([f"{paths.hub_env}/bin/python3", "-c", _SHOW, paths.tljh_config_yaml])
    if not result.ok:
        return {}
    return json.loads(result.stdout or "{}")


def config_set(host: Host, paths: Paths, key: str, value: str) -> None:
    host.run([paths.tljh_config_cmd, "set", key, value])


def config_add_item(host: Host, paths: Paths, key: str, value: str) -> None:
    host.run([paths.tljh_config_cmd, "add-item", key, value])


def restart_hub(host: Host, ports: Ports, *, wait: bool = True) -> bool:
    """Restart the hub; True once its API answers (within two minutes)."""
    host.run(["systemctl", "restart", "jupyterhub"])
    if not wait:
        return True
    for _ in range(40):
        probe = ["curl", "-fsS", "-o", "/dev/null", "--max-time", "3", f"{ports.hub_api}/"]
        if host.query(probe).ok:
            return True
        host.sleep(3)
    return False


def passwords_missing(host: Host, paths: Paths) -> list[str]:
    """Pre-set hub accounts without an entry in TLJH's password store (hub_passwords.py)."""
    result = host.query([*_passwords_command(paths), "--missing"])
    return result.stdout.split() if result.ok else []


def seed_passwords(host: Host, paths: Paths) -> None:
    host.run(_passwords_command(paths))


def _passwords_command(paths: Paths) -> list[str]:
    python = f"{paths.hub_env}/bin/python3"
    return [python, "-m", PASSWORDS, paths.hub_passwords_dir, paths.tljh_password_store]


def lookup(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def user_pip_installed(host: Host, paths: Paths, package: str) -> bool:
    return host.query([f"{paths.user_env}/bin/python", "-m", "pip", "show", "-q", package]).ok


def user_pip_install(
    host: Host, paths: Paths, specs: list[str], *extra: str, env: dict[str, str] | None = None
) -> None:
    host.run([f"{paths.user_env}/bin/python", "-m", "pip", "install", *extra, *specs], env=env)
