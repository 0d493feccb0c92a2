"""dlcourse as a TLJH plugin: TLJH loads it from the ``tljh`` entry point group.

Runs inside TLJH's hub environment (which has pluggy), never in the installer. The hook
names and arguments are TLJH's (tljh/hooks.py); pluggy checks them when it registers us.
"""

from __future__ import annotations

import json
import os

import pluggy

hookimpl = pluggy.HookimplMarker("tljh")

# What every student needs in TLJH's user environment beyond PyTorch (which the installer
# adds from PyTorch's index with the CUDA build matching the driver): their own GPU use
# (nvdashboard), their memory and CPU against the limits (resource-usage), widgets.
USER_PIP_PACKAGES = ["jupyterlab-nvdashboard", "jupyter-resource-usage", "ipywidgets"]


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
def tljh_post_install():
    """Let jupyter-resource-usage show CPU as well as memory, for every user."""
    prefix = os.environ.get("TLJH_INSTALL_PREFIX", "/opt/tljh")
    conf_d = os.path.join(prefix, "user", "etc", "jupyter", "jupyter_server_config.d")
    os.makedirs(conf_d, exist_ok=True)
    path = os.path.join(conf_d, "dlcourse-resource-usage.json")
    settings = {"ResourceUseDisplay": {"track_cpu_percent": True}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
