"""The suite's student-side helpers from a checkout other accounts cannot enter.

Issue 21, item 4: `make test` from root's clone under /root (or any 0700 folder) failed, a
test having run the checkout's `.venv/bin/python` as a student. Here the working tree (as
git lists it) is copied into a 0700 folder with a venv of its own inside (the system
Python; the test venv's packages; this copy's own modules, by the names pyproject.toml
and testing/pyproject.toml map them to), and runs tests/testing/test_student_processes.py there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from dlcourse_testing.students import python_as

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("pyproject.toml", "testing/pyproject.toml")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the students' accounts"),
]


def copy_working_tree(to: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is still listed
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name, follow_symlinks=False)


def private_venv(checkout: Path) -> Path:
    """checkout/.venv: the system Python, this test venv's packages, the copy's modules."""
    venv = checkout / ".venv"
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    packages = venv / "checkout-packages"
    packages.mkdir()
    for project in DISTRIBUTIONS:  # the product and the test helpers: two distributions
        folder = (checkout / project).parent
        setuptools = tomllib.loads((checkout / project).read_text())["tool"]["setuptools"]
        for name in setuptools["packages"]:
            if "." not in name:
                target = folder / setuptools["package-dir"].get(name, name)
                (packages / name).symlink_to(target.resolve())
    (site,) = venv.glob("lib/python3*/site-packages")
    # Plain paths, not site dirs: the test venv's own .pth files (its editable install of
    # this checkout) stay out; the copy's modules come first.
    (site / "checkout.pth").write_text(f"{packages}\n{sysconfig.get_paths()['purelib']}\n")
    return venv / "bin" / "python"


def test_the_student_side_helpers_run_from_a_0700_checkout(make_linux_user):
    private = Path(tempfile.mkdtemp(prefix="dlcourse-private-"))  # 0700: no one else enters
    try:
        checkout = private / "dlcourse"
        copy_working_tree(checkout)
        python = private_venv(checkout)
        # As in a root clone: the copy's own Python is not a student's to run.
        with pytest.raises(PermissionError):
            python_as(make_linux_user(), "pass", executable=str(python)).wait(60)
        result = subprocess.run(
            [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q",
             "tests/testing/test_student_processes.py"],
            cwd=checkout, capture_output=True, text=True, timeout=600,
            env={**os.environ, "DLCOURSE_PRIVATE_CHECKOUT": "1"},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "2 passed" in result.stdout
    finally:
        shutil.rmtree(private, ignore_errors=True)
