"""The users' environment for real: a real venv stands in for TLJH's /opt/tljh/user, real pip
installs from a folder of wheels built here (never PyPI), with the pins `render` writes; the
course packages step runs on the real machine and imports as a real temporary account.

The wheels: a stand-in ``torch`` at the build the installer chose for the model server
(2.14.1+cu132, render.MODEL_PYTORCH), PyPI's default build of that version (2.14.1, no
label) and a newer release (2.15.0) that pip would otherwise take.
"""

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest

from dlcourse_installer import cli
from dlcourse_installer.checklist import runner
from dlcourse_installer.inputs.course_packages import Package
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.machine import user_env
from dlcourse_installer.machine.host import RealHost
from dlcourse_testing.rendered import render_site

from .conftest import REPO

CHOSEN = "2.14.1+cu132"


def wheel(folder: Path, name: str, version: str, files: dict[str, str], requires=()) -> None:
    """A pure-Python wheel: enough metadata for pip and importlib.metadata."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: dlcourse-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}\n")
    files[f"{info}/RECORD"] = "".join(record) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def build_wheels(folder: Path) -> None:
    folder.mkdir()
    for version in (CHOSEN, "2.14.1", "2.15.0"):
        wheel(folder, "torch", version, {"torch/__init__.py": f"__version__ = {version!r}\n"})
    wheel(folder, "course-helper", "1.0", {"course_helper/__init__.py": "import torch\n"},
          requires=["torch"])  # fmt: skip
    wheel(folder, "needs-new-torch", "1.0", {"needs_new_torch.py": ""}, requires=["torch>=2.15"])
    # Distribution and module named differently, as scikit-learn and sklearn.
    wheel(folder, "scikit-tiny", "0.3", {"sktiny/__init__.py": "", "_sktiny_speedups.py": ""})
    wheel(folder, "broken-package", "1.0", {"broken_package/__init__.py":
          "raise ImportError('libbroken.so.1: cannot open shared object file')\n"})  # fmt: skip
    wheel(folder, "tiny-gdal", "3.9.2", {"tosgeo/__init__.py": ""})


@pytest.fixture(scope="module")
def site():
    """A world-readable folder (a temporary account reads it): the install's files rendered
    with --relocate, the users' environment a real venv at their place, the wheels."""
    top = Path(tempfile.mkdtemp(prefix="dlcourse-userenv-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        paths = Paths().under(str(top))
        subprocess.run(["/usr/bin/python3", "-m", "venv", paths.user_env], check=True, timeout=300)
        render_site(top, "--admin", "teacher", relocate=True)
        build_wheels(top / "wheels")
        for sub in ("home", "no-global-config"):
            (top / sub).mkdir()
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        yield top, paths
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def offline_pip(site, monkeypatch):
    """pip sees the wheel folder only, and none of this machine's own pip configuration."""
    top, _ = site
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(top / "wheels"))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("HOME", str(top / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(top / "home"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(top / "no-global-config"))
    return dict(os.environ)


def pip(paths: Paths, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [f"{paths.user_env}/bin/python", "-m", "pip", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def installed_torch(paths: Paths, env: dict) -> str:
    check = ["-c", "from importlib.metadata import version; print(version('torch'))"]
    done = subprocess.run([f"{paths.user_env}/bin/python", *check], capture_output=True,
                          text=True, env=env, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip()


def test_the_rendered_pins_keep_the_chosen_torch_against_real_pip(site, offline_pip):
    top, paths = site
    env = offline_pip
    assert f"constraint = {paths.pytorch_constraints}" in Path(paths.user_pip_conf).read_text()
    assert f"pytorch =={CHOSEN}" in Path(paths.user_conda_pinned).read_text()
    assert pip(paths, env, "install", "--force-reinstall", f"torch=={CHOSEN}").returncode == 0

    # Without the pins pip would take the newer torch: what a TLJH upgrade's
    # `pip install --upgrade` of a package that depends on torch does.
    eager = ["--upgrade", "--upgrade-strategy", "eager", "course-helper"]
    unpinned = {**env, "PIP_CONSTRAINT": os.devnull}
    report = pip(paths, unpinned, "install", "--dry-run", "--quiet", "--report", "-", *eager)
    would = {i["metadata"]["name"]: i["metadata"]["version"]
             for i in json.loads(report.stdout)["install"]}  # fmt: skip
    assert would == {"course-helper": "1.0", "torch": "2.15.0"}, report.stderr

    # With them (pip.conf alone: nothing on the command line), it stays.
    done = pip(paths, env, "install", *eager)
    assert done.returncode == 0, done.stderr
    assert installed_torch(paths, env) == CHOSEN
    # Not even a reinstall of torch swaps in PyPI's build of the same version.
    assert pip(paths, env, "install", "--force-reinstall", "torch").returncode == 0
    assert installed_torch(paths, env) == CHOSEN
    # A package that needs a newer torch is refused, and says why.
    refused = pip(paths, env, "install", "needs-new-torch")
    assert refused.returncode != 0 and "ResolutionImpossible" in refused.stderr
    assert installed_torch(paths, env) == CHOSEN


def probe(paths: Paths, env: dict, command: str, packages: list[Package]) -> list[dict]:
    argv = [f"{paths.user_env}/bin/python", "-c", user_env.probe_source(), command,
            json.dumps([asdict(p) for p in packages])]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_probe_reads_versions_and_module_names_from_metadata(site, offline_pip):
    _, paths = site
    env = offline_pip
    assert pip(paths, env, "install", "scikit-tiny==0.3", "tiny-gdal").returncode == 0
    # A conda package's record, as conda writes it, whose Python distribution is tiny-gdal.
    site_packages = next(Path(paths.user_env, "lib").glob("python3*/site-packages"))
    record = {"name": "tinygdal", "version": "3.9.2",
              "files": [f"{site_packages.relative_to(paths.user_env)}/"
                        "tiny_gdal-3.9.2.dist-info/METADATA"]}  # fmt: skip
    Path(paths.user_env, "conda-meta", "tinygdal-3.9.2-0.json").write_text(json.dumps(record))
    listed = [
        Package("pip", "scikit-tiny>=0.4", "scikit-tiny"),
        Package("pip", "absent", "absent"),
        Package("conda", "tinygdal=3.9", "tinygdal"),
        Package("conda", "ffmpeg", "ffmpeg"),
    ]
    versions = probe(paths, env, "installed", listed)
    assert [(r["version"], r["satisfied"]) for r in versions] == [
        ("0.3", False),  # installed, but not what the list asks for
        (None, False),
        ("3.9.2", None),  # conda's rules need conda, which a venv lacks: no verdict
        (None, False),
    ]
    imports = probe(paths, env, "imports", listed[:3])
    assert [(r["modules"], r["error"]) for r in imports] == [
        (["sktiny"], None),  # not scikit_tiny, and not the private _sktiny_speedups
        ([], "not installed"),
        (["tosgeo"], None),  # from the conda record's dist-info
    ]


def test_course_packages_step_installs_and_imports_as_a_real_temporary_account(
    site, offline_pip, capsys
):
    if os.geteuid() != 0:
        pytest.skip("needs root: the check runs as a temporary account made with useradd")
    top, paths = site
    env = offline_pip
    assert pip(paths, env, "install", "--force-reinstall", f"torch=={CHOSEN}").returncode == 0
    # The environment as the installer leaves it: none of the course's packages yet.
    pip(paths, env, "uninstall", "--yes", "course-helper", "scikit-tiny")
    course = top / "course.txt"
    course.write_text("course-helper\nscikit-tiny\n")
    log = io.StringIO()
    rc = cli.packages([str(course)], host=RealHost(log=log), paths=paths)
    out = capsys.readouterr().out
    assert rc == runner.EXIT_OK, out + log.getvalue()
    assert "imported as a temporary unprivileged account: course_helper, sktiny" in out
    assert installed_torch(paths, env) == CHOSEN
    assert Path(paths.course_packages).read_text() == course.read_text()
    (snapshot,) = Path(paths.package_snapshots).glob("pip-list-*.txt")
    assert f"torch=={CHOSEN}" in snapshot.read_text()  # as it was: before the course packages
    assert "course-helper" not in snapshot.read_text()
    # The temporary account it made (named in the log) is gone again.
    (account,) = set(re.findall(r"useradd .* (dlcourse-check-[0-9a-f]+)$", log.getvalue(), re.M))
    assert subprocess.run(["getent", "passwd", account], capture_output=True).returncode == 2

    course.write_text("course-helper\nscikit-tiny\nbroken-package\n")
    rc = cli.packages([str(course)], host=RealHost(log=log), paths=paths)
    out = capsys.readouterr().out
    assert rc == runner.EXIT_FAILED
    assert ("      broken-package: import broken_package: ImportError: libbroken.so.1: cannot "
            "open shared object file\n") in out  # fmt: skip
    assert "1 of 3 course packages do not import for a student" in out

    with contextlib.redirect_stdout(io.StringIO()) as status:
        cli.status(RealHost(), paths)
    assert "  pip   course-helper   1.0" in status.getvalue()
    assert f"PyTorch kept at torch=={CHOSEN}" in status.getvalue()


def test_the_probe_is_the_installer_file_itself():
    """The users' environment runs the text of installer/probes/user_env_probe.py, nothing else."""
    assert (
        user_env.probe_source()
        == (Path(REPO) / "installer" / "probes" / "user_env_probe.py").read_text()
    )
