"""dlcourse as a TLJH plugin: TLJH loads it from the ``tljh`` entry point group.

Runs inside TLJH's hub environment (which has pluggy), never in the installer. The hook
names and arguments are TLJH's (tljh/hooks.py); pluggy checks them when it registers us.
"""

from __future__ import annotations

import pluggy

from dlcourse_installer.catalogs.user_packages import USER_PIP_PACKAGES
from dlcourse_installer.hub import hub_passwords
from dlcourse_installer.layout.paths import Paths

hookimpl = pluggy.HookimplMarker("tljh")


@hookimpl
def tljh_extra_user_pip_packages():
    return list(USER_PIP_PACKAGES)


@hookimpl
def tljh_custom_jupyterhub_config(c):
    # CUDA numbers GPUs fastest-first unless told otherwise; PCI order makes a student's
    # cuda:0 the same GPU as nvidia-smi's 0 and the exporter's gpu="0" label.
    c.Spawner.environment.update({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    # /hub/metrics only for a token with read:metrics (the dlcourse-prometheus service).
    c.JupyterHub.authenticate_prometheus = True


@hookimpl
def tljh_config_post_install(config):
    """Pre-set the admins' passwords: TLJH calls this before it first starts the hub, so the
    hub never listens with an admin account that anyone could claim (hub_passwords.py)."""
    paths = Paths.from_env()  # the installer passes DLCOURSE_ETC and TLJH_INSTALL_PREFIX
    hub_passwords.seed(paths.hub_passwords_dir, paths.tljh_password_store)
