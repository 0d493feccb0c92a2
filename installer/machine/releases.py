"""Which release of dlcourse and of TLJH an environment holds, and the pip commands that
install one (what ``--source`` names: inputs/source.py).

A step is done only while the releases it installed are still there (checklist/step.py,
``Step.installed``), so each is read from the machine: the ``.dist-info`` folder pip writes
for a distribution, named ``{name}-{version}.dist-info``, with its ``RECORD`` listing every
installed file and its hash (the wheel format: PyPA "Recording installed projects"). A new
build of dlcourse gives a new RECORD, whatever its version says.
"""

from __future__ import annotations

import hashlib
import os

from dlcourse_installer.machine.host import Host


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
