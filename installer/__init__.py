"""dlcourse-install: turns a fresh Ubuntu GPU server into the course platform.

Its folders say where their code runs and what it may lean on (tests/installer/test_layers.py
holds every rule):

- ``checklist/``  the steps in order (``STEPS``), one module each, the runner and the state;
  only ``cli`` and ``docs`` import it
- ``machine/``    the one door to the host (``host``) and one-verb wrappers over it; it
  imports no checklist/, rendered/ or inputs/
- ``inputs/``     the options (each declared once), the roster, the course packages file,
  ``--source``; no machine/
- ``rendered/``   every file an install writes (``generated.plan``), their text, and
  ``dlcourse-install render``
- ``catalogs/``   upstream's tables with their sources: driver branches, PyTorch builds, pinned
  packages; standard library only
- ``layout/``     every path and port; standard library only
- ``hub/``        runs inside JupyterHub (the TLJH plugin, the GPU hook, hub passwords, the
  GPU idle thresholds the culler and the students' page share): the
  standard library, what TLJH's hub environment has, layout/ and catalogs/
- ``probes/``     runs as a student in the students' environment: the standard library (the
  probe of installed packages; the IPython extension every kernel loads)
- ``bootstrap.py`` a bare server's Python, the standard library; ``cli`` is
  ``dlcourse-install``; ``docs`` writes docs/installer.md's option table; ``report`` is
  ``dlcourse-install report`` (the term per student, from Prometheus)

The installer itself needs only the standard library (bootstrap.py runs it from a bare
checkout before any venv exists), but for bcrypt, a dependency imported only when an install
or render makes a hash. No import cycle, between modules nor between folders.
"""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    try:
        return version("dlcourse")
    except PackageNotFoundError:
        # A checkout that was never installed (bootstrap.py --dry-run): its pyproject.toml.
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
        return found.group(1) if found else "unknown"


__version__ = _version()
