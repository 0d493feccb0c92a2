"""dlcourse-install: turns a fresh Ubuntu GPU server into the course platform.

Stdlib only (bootstrap.py runs it from a bare checkout before any venv exists), but for
bcrypt, a dependency imported only when an install or render makes a hash. The layout:

- ``host``     the one door to the machine: run a command, read/write a file, exists
- ``paths``, ``ports``  every location and every listen port, in one place each
- ``apt``, ``systemd``, ``users``, ``files``, ``tljh``: thin one-verb wrappers over ``Host``
- ``templates`` the text of generated files (units, configs)
- ``staff``, ``access``, ``webauth``, ``grafana_config``: who may see per-student data, and
  the credential every monitoring endpoint asks for (docs/security.md)
- ``assets``   the packaged rules, Alertmanager configuration and dashboards
- ``generated`` the registry: every file an install writes (``render`` writes them all)
- ``options``  every option declared once (flag, help, reading, check, default); ``docs``
  writes docs/installer.md's option table from it
- ``releases`` which release of dlcourse (``--source``) and TLJH an environment holds
- ``steps``    the readable checklist of idempotent ``ensure_*`` steps, in order, each
  declaring the options it reads (the only ones it sees)
- ``state``    which steps are done (with which inputs), what they installed, a pending reboot
- ``runner``   progress, elapsed time, resume, reboot handling
- ``cli``      ``dlcourse-install`` itself
- ``tljh_plugin`` the TLJH plugin (loaded by TLJH through pluggy, not by the installer)
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
