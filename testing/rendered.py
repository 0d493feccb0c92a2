"""The installer's files, as `dlcourse-install render` writes them, for any test area.

    site = render_site(tmp_path / "site", "--admin", "teacher", relocate=True,
                       ports={"prometheus": free_port()})
    site.local("/etc/prometheus/prometheus.yml")   # where that server file lies here
    site.owners["/etc/dlcourse/hub-token"]         # ("root", "root", 0o600)

It runs the real command line in a subprocess, so tests see exactly what an install writes.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXPORTER_UNIT = "/etc/systemd/system/dlcourse-exporter.service"


@dataclass(frozen=True)
class Site:
    root: Path
    owners: dict[str, tuple[str, str, int]]  # server path -> (owner, group, mode)

    def local(self, server_path: str) -> Path:
        return self.root / server_path.lstrip("/")

    def read(self, server_path: str) -> str:
        return self.local(server_path).read_text()


def parse_owners(text: str) -> dict[str, tuple[str, str, int]]:
    owners = {}
    for line in text.splitlines():
        path, owner_group, mode = line.split(" ")
        owner, group = owner_group.split(":")
        owners[path] = (owner, group, int(mode, 8))
    return owners


def render_site(
    root: Path, *install_args: str, relocate: bool = False, ports: dict[str, int] | None = None
) -> Site:
    argv = [sys.executable, "-m", "dlcourse_installer", "render", "--root", str(root)]
    argv += ["--relocate"] if relocate else []
    argv += [f"--port={name}={port}" for name, port in (ports or {}).items()]
    result = subprocess.run([*argv, *install_args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"render failed ({result.returncode}): {result.stderr}")
    return Site(root, parse_owners((root / "OWNERS").read_text()))


def apply_owners(site: Site) -> None:
    """Modes and owners as OWNERS says, for the accounts this machine has (Grafana's has no
    package here: its files stay root's, which only takes from Grafana)."""
    for path, (owner, group, mode) in site.owners.items():
        os.chmod(site.local(path), mode)
        try:
            os.chown(site.local(path), pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
        except KeyError:
            continue


def daemon_args(site: Site, default_file: str) -> list[str]:
    """$ARGS of /etc/default/<name>, as the Debian unit passes them."""
    line = next(x for x in site.read(default_file).splitlines() if x.startswith("ARGS="))
    return shlex.split(shlex.split(line.partition("=")[2])[0])


def unit_command(site: Site) -> list[str]:
    """The exporter unit's ExecStart arguments, its credentials where systemd would put them."""
    text = site.read(EXPORTER_UNIT).replace("\\\n", " ")
    credentials = {}
    argv: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "LoadCredential":
            name, _, source = value.partition(":")
            credentials[name] = source
        elif key == "ExecStart":
            argv = shlex.split(value)[1:]  # the program: this checkout's exporter instead
    return [
        arg.split("=%d/")[0] + "=" + credentials[arg.split("=%d/")[1]] if "=%d/" in arg else arg
        for arg in argv
    ]
