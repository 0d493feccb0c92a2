"""dlcourse-install: turns a fresh Ubuntu GPU server into the course platform.

Stdlib only (it runs before any venv exists, as TLJH's installer does). The layout:

- ``host``     the one door to the machine: run a command, read/write a file, exists
- ``paths``    every location, derived from one prefix
- ``apt``, ``systemd``, ``users``, ``files``, ``tljh``: thin one-verb wrappers over ``Host``
- ``templates`` the text of generated files (units, configs)
- ``steps``    the readable checklist of idempotent ``ensure_*`` steps, in order
- ``state``    which steps are done, whether a reboot is pending
- ``runner``   progress, elapsed time, resume, reboot handling
- ``cli``      ``dlcourse-install`` itself
- ``tljh_plugin`` the TLJH plugin (loaded by TLJH through pluggy, not by the installer)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlcourse")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0.0.0+unknown"
