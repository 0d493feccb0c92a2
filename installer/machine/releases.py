"""Which release of dlcourse and of TLJH: what ``--source`` names, what an environment holds.

A step is done only while the releases it installed are still there (steps.Step.installed),
so each is read from the machine: the ``.dist-info`` folder pip writes for a distribution,
named ``{name}-{version}.dist-info``, with its ``RECORD`` listing every installed file and
its hash (the wheel format: PyPA "Recording installed projects"). A new build of dlcourse
gives a new RECORD, whatever its version says.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from dlcourse_installer.machine.host import Host

# A checkout's own outputs and caches: not part of what pip builds from it.
NOT_SOURCE = {".git", ".venv", ".demo", "build", "dist", "node_modules", "__pycache__", "tmp"}
# Bounds on reading a checkout: dlcourse's is about 300 files and 2 MB.
MAX_FILES = 20_000
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """What ``--source`` installs: a pip spec or a checkout's folder, and for a folder a digest
    of its files, so that the same folder with new contents (a git pull) is a new source."""

    spec: str
    digest: str = ""


def read_source(spec: str) -> Source:
    """The source a ``--source`` names; ValueError (a short reason) for a folder that is no
    checkout or that is too big to be one."""
    if not os.path.isdir(spec):
        return Source(spec)  # a pip spec: the text itself says which release
    if not os.path.exists(os.path.join(spec, "pyproject.toml")):
        raise ValueError("a folder without pyproject.toml is no dlcourse checkout")
    digest = hashlib.sha256()
    files = size = 0
    for top, dirs, names in os.walk(spec):
        dirs[:] = sorted(
            d for d in dirs if d not in NOT_SOURCE and not d.startswith(".")
            and not d.endswith(".egg-info")
        )  # fmt: skip
        for name in sorted(names):
            path = os.path.join(top, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            files += 1
            size += os.path.getsize(path)
            if files > MAX_FILES or size > MAX_BYTES:
                raise ValueError(
                    f"more than {MAX_FILES} files or {MAX_BYTES >> 20} MB: no dlcourse checkout"
                )
            digest.update(os.path.relpath(path, spec).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return Source(spec, digest.hexdigest()[:16])


def installed(host: Host, prefix: str, distribution: str) -> dict[str, str] | None:
    """The release of a distribution in the Python environment at prefix: its version and a
    digest of its RECORD; None if it is not installed there. ``distribution`` is the name as
    its .dist-info folder spells it (``dlcourse``, ``the_littlest_jupyterhub``)."""
    found = sorted(host.glob(f"{prefix}/lib/python3*/site-packages/{distribution}-*.dist-info"))
    if not found:
        return None
    folder = found[-1]
    version = os.path.basename(folder).removeprefix(f"{distribution}-").removesuffix(".dist-info")
    record = host.read_text(f"{folder}/RECORD") or ""
    return {"version": version, "record": hashlib.sha256(record.encode()).hexdigest()[:16]}


def pip_install(python: str, spec: str, *, upgrade: bool) -> list[str]:
    """The pip command that installs spec, or upgrades what is there to it."""
    return [python, "-m", "pip", "install", *(["--upgrade"] if upgrade else []), spec]


def pip_reinstall(python: str, spec: str) -> list[str]:
    """The pip command that replaces an installed release of the same version.

    ``pip install --upgrade`` keeps an installed distribution of the same version unless the
    new one comes from a local folder (pip's resolver, ``resolution/resolvelib/resolver.py``,
    pip 24 to 26: "is a local wheel -- do nothing"; URLs and index releases are skipped
    alike), so a new build from a git URL or a wheel needs ``--force-reinstall``; its
    dependencies were just brought up to date, hence ``--no-deps``."""
    return [python, "-m", "pip", "install", "--force-reinstall", "--no-deps", spec]
