"""The students' JupyterLab extension: the committed build is the build of the committed
sources, the installer installs it, and a real JupyterLab, as a student, loads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.rendered import assets
from dlcourse_testing.rendered import Site, render_site

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"


def built_from() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sources", LABEXTENSION / "sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digest(LABEXTENSION)


def test_the_committed_build_is_of_the_committed_sources():
    recorded = (LABEXTENSION / "BUILT_FROM").read_text().strip()
    assert recorded == built_from(), "labextension/ changed without `make labextension`"


def test_the_build_names_its_entry_point_and_the_installer_ships_it():
    built = json.loads((LABEXTENSION / "prebuilt" / "package.json").read_text())
    source = json.loads((LABEXTENSION / "package.json").read_text())
    assert built["name"] == source["name"] == "@dlcourse/jupyterlab-gpu"
    entry = built["jupyterlab"]["_build"]["load"]
    shipped = {a.name for a in assets.labextension()}
    assert {"package.json", entry} <= shipped
    assert Paths().labextension.endswith("/share/jupyter/labextensions/@dlcourse/jupyterlab-gpu")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return render_site(tmp_path_factory.mktemp("labext") / "site", "--admin", "teacher")


def test_jupyterlab_lists_it_enabled_for_a_student(site, make_linux_user, user_env):
    """The files `dlcourse-install render` writes, as JupyterLab finds them in the users'
    environment (here a copy every account can read, named by JUPYTER_PATH)."""
    student = make_linux_user()
    data = Path(tempfile.mkdtemp(prefix="dlcourse-labext-"))
    try:
        rendered = site.local(Paths().labextension)
        target = data / "labextensions" / "@dlcourse" / "jupyterlab-gpu"
        shutil.copytree(rendered, target)
        subprocess.run(["chmod", "-R", "a+rX", str(data)], check=True)
        listed = subprocess.run(
            ["runuser", "-u", student.pw_name, "--", "env", f"JUPYTER_PATH={data}",
             f"HOME={student.pw_dir}", str(user_env / "bin" / "jupyter"), "labextension", "list"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(data)
    out = listed.stdout + listed.stderr
    line = next((x for x in out.splitlines() if "@dlcourse/jupyterlab-gpu" in x), "")
    assert "enabled" in line and "OK" in line, out
