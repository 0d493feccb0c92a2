"""The packages every student's environment gets besides PyTorch, each pinned."""

# What every student needs in TLJH's user environment beyond PyTorch (which the installer
# adds from PyTorch's index with the CUDA build matching the driver): their own GPU use
# (nvdashboard), their memory and CPU against the limits (resource-usage), widgets. The
# TLJH plugin hands the same list to TLJH, which installs it with `pip install --upgrade` and
# no constraints at every TLJH upgrade (tljh/installer.py run_plugin_actions, TLJH 2.0.0):
# so each is pinned exactly, to the newest release on PyPI on 2026-12-01 (`pip index
# versions`), within TLJH 2.0.0's own ranges (tljh/requirements-user-env-extras.txt).
USER_PIP_PACKAGES = [
    "jupyterlab-nvdashboard==0.15.0",
    "jupyter-resource-usage==1.3.0",
    "ipywidgets==8.1.9",
]
