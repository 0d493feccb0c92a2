"""The installer's files, as `dlcourse-install render` writes them, for any test area.

    site = render_site(tmp_path / "site", "--admin", "teacher", relocate=True,
                       ports={"prometheus": free_port()})
    site.local("/etc/prometheus/prometheus.yml")   # where that server file lies here
    site.owners["/etc/dlcourse/hub-token"]         # ("root", "root", 0o600)

It runs the real command line in a subprocess, so tests see exactly what an install writes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


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
