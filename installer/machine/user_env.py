"""The students' environment (TLJH's /opt/tljh/user), one verb each: what it has, what goes
into it, and whether a student can import it. Its own Python answers (user_env_probe.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from dlcourse_installer.catalogs.pytorch import PACKAGES as PYTORCH_PACKAGES
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.machine import tljh, users
from dlcourse_installer.machine.host import Host
from dlcourse_installer.probes import user_env_probe

CONDA_FORGE = ("--override-channels", "-c", "conda-forge")


class Wanted(Protocol):
    """A package to ask the environment about (a course package is one): what the probe
    reads of it."""

    @property
    def kind(self) -> str: ...  # "pip" or "conda"

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> str: ...

    @property
    def modules(self) -> tuple[str, ...]: ...  # to import; () when its metadata tells


@cache
def probe_source() -> str:
    return Path(user_env_probe.__file__).read_text(encoding="utf-8")


def _probe_argv(paths: Paths, command: str, packages: Sequence[Wanted]) -> list[str]:
    listed = [
        {"kind": p.kind, "name": p.name, "spec": p.spec, "modules": list(p.modules)}
        for p in packages
    ]
    return [f"{paths.user_env}/bin/python", "-c", probe_source(), command, json.dumps(listed)]


def _rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def installed(host: Host, paths: Paths, packages: Sequence[Wanted]) -> list[dict] | None:
    """Per package: its installed version and whether it satisfies the list; None when the
    environment does not answer (not made yet)."""
    result = host.query(_probe_argv(paths, "installed", packages))
    return _rows(result.stdout) if result.ok else None


@dataclass(frozen=True)
class _Pip:
    """A pip distribution asked about by its name alone."""

    name: str
    kind: str = "pip"
    modules: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return self.name


def pytorch(host: Host, paths: Paths) -> tuple[str, ...]:
    """PyTorch's packages as installed, exactly: ("torch==2.13.0+cu130", ...)."""
    rows = installed(host, paths, [_Pip(name) for name in PYTORCH_PACKAGES]) or []
    return tuple(f"{row['name']}=={row['version']}" for row in rows if row["version"])


def imports(host: Host, paths: Paths, packages: Sequence[Wanted]) -> list[dict]:
    """Per package: the modules imported as a temporary unprivileged account, and the error."""
    with users.temporary_account(host) as account:
        argv = ["runuser", "-u", account, "--", *_probe_argv(paths, "imports", packages)]
        result = host.query(argv, timeout=60 + user_env_probe.IMPORT_SECONDS * len(packages))
    rows = _rows(result.stdout)
    if not result.ok and len(rows) < len(packages):
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit {result.rc}")
    return rows


def pip_install(host: Host, paths: Paths, specs: list[str], *extra: str) -> None:
    """With the PyTorch constraints named outright (pip.conf names them too)."""
    tljh.user_pip_install(host, paths, specs, "--constraint", paths.pytorch_constraints, *extra)


def conda_install(host: Host, paths: Paths, specs: list[str]) -> None:
    """conda-forge only, as TLJH installs conda packages (tljh/conda.py); the environment's
    conda-meta/pinned keeps PyTorch out."""
    conda = f"{paths.user_env}/bin/conda"
    host.run([conda, "install", "--yes", "--prefix", paths.user_env, *CONDA_FORGE, *specs])


def pip_list(host: Host, paths: Paths) -> str | None:
    """``name==version`` of every distribution: `pip install -r` takes it back. Not `pip
    freeze`: in a conda environment it writes conda's packages as file:// URLs of
    conda-forge's build machines (conda/conda#11580)."""
    python = f"{paths.user_env}/bin/python"
    result = host.query([python, "-m", "pip", "list", "--format=freeze"])
    return result.stdout if result.ok else None
