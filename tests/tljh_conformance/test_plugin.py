"""TLJH's own code loads dlcourse's plugin and calls each of its hooks; what the hooks return
is what TLJH's callers consume (tljh/installer.py, tljh/jupyterhub_config.py, TLJH 2.0.0).

A misspelt entry-point group leaves the plugin unfound; a misspelt hook is one TLJH never
calls (TLJH does not check; pluggy's check_pending does, on TLJH's plugin manager); a hook
with other arguments than TLJH's makes TLJH's plugin loading raise. Each fails here.
"""

import dbm
import json
import re
import subprocess

import bcrypt
import yaml

from dlcourse_installer.catalogs import user_packages
from dlcourse_installer.hub import tljh_plugin
from dlcourse_testing.tljh_hub import probe

PLUGIN = "dlcourse_installer.hub.tljh_plugin"


def test_tljh_finds_the_plugin_through_its_entry_point_group(tljh_python, tmp_path):
    seen = probe("plugins", prefix=tmp_path)
    # The installer's manager, and the one the hub's configuration and tljh.user use.
    for manager in ("setup_plugins", "get_plugin_manager"):
        assert seen[manager]["plugins"].get("dlcourse") == PLUGIN, seen[manager]


def test_every_hook_of_the_plugin_is_one_tljh_calls(tljh_python, tmp_path):
    seen = probe("plugins", prefix=tmp_path)["setup_plugins"]
    assert seen["unknown_hooks"] is None
    ours = sorted(name for name, f in vars(tljh_plugin).items() if hasattr(f, "tljh_impl"))
    assert ours and seen["hooks"]["dlcourse"] == ours


def test_tljh_config_post_install_presets_the_admins_password(make_tljh_hub):
    """TLJH's installer calls the hook (ensure_config_yaml) before it first starts the hub:
    the admin's generated password is in TLJH's store, hashed, and config.yaml names the
    admin (ensure_admins)."""
    hub = make_tljh_hub(start=False)
    with dbm.open(str(hub.prefix / "state" / "passwords.dbm"), "r") as store:
        stored = store[hub.admin.encode()]
    assert bcrypt.checkpw(hub.admin_password().encode(), stored)
    config = yaml.safe_load((hub.prefix / "config" / "config.yaml").read_text())
    assert config["users"]["admin"] == [hub.admin]


def test_run_plugin_actions_installs_the_users_packages(tljh_python, tmp_path):
    """TLJH chains every plugin's list into one `pip install --upgrade` in the users'
    environment. pip runs for real there (a venv standing in for TLJH's conda environment),
    as a dry run that reports what it would install."""
    prefix = tmp_path / "tljh"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(prefix / "user")], check=True)
    report = tmp_path / "pip-report.json"
    probe("plugin-actions", prefix=prefix, PIP_DRY_RUN="1", PIP_REPORT=str(report))
    installs = json.loads(report.read_text())["install"]
    requested = {
        f"{_canonical(i['metadata']['name'])}=={i['metadata']['version']}"
        for i in installs
        if i["requested"]
    }
    pinned = (package.split("==") for package in user_packages.USER_PIP_PACKAGES)
    assert requested == {f"{_canonical(name)}=={version}" for name, version in pinned}


def _canonical(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()
