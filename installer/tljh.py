"""TLJH's own tools: tljh-config and its environments, one verb each."""

from __future__ import annotations

import json

from dlcourse_installer.host import Host
from dlcourse_installer.paths import Paths

# TLJH's hub environment has PyYAML; the installer is stdlib-only, so it asks that Python
# to turn config.yaml into JSON rather than parse YAML itself.
_SHOW = (
    "import json, sys, yaml; p = sys.argv[1]\n"
    "try:\n    d = yaml.safe_load(open(p)) or {}\nexcept FileNotFoundError:\n    d = {}\n"
    "print(json.dumps(d))"
)


def is_installed(host: Host, paths: Paths) -> bool:
    return host.exists(paths.tljh_config_cmd) and host.exists(f"{paths.user_env}/bin/python")


def config(host: Host, paths: Paths) -> dict:
    result = host.query([f"{paths.hub_env}/bin/python3", "-c", _SHOW, paths.tljh_config_yaml])
    if not result.ok:
        return {}
    return json.loads(result.stdout or "{}")


def config_set(host: Host, paths: Paths, key: str, value: str) -> None:
    host.run([paths.tljh_config_cmd, "set", key, value])


def config_add_item(host: Host, paths: Paths, key: str, value: str) -> None:
    host.run([paths.tljh_config_cmd, "add-item", key, value])


def reload_hub(host: Host, paths: Paths) -> None:
    host.run([paths.tljh_config_cmd, "reload", "hub"])


def lookup(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def user_pip_installed(host: Host, paths: Paths, package: str) -> bool:
    return host.query([f"{paths.user_env}/bin/python", "-m", "pip", "show", "-q", package]).ok


def user_pip_install(host: Host, paths: Paths, specs: list[str], *extra: str) -> None:
    host.run([f"{paths.user_env}/bin/python", "-m", "pip", "install", *extra, *specs])
