"""Ubuntu 22.04 to 26.04 bring Python 3.10 to 3.14: the installer's code must run on each.

Only one Python is installed here, so the checks read the source: the grammar of the oldest
Python (3.10; the bootstrap parses even on 3.8 to refuse Ubuntu 20.04 in plain words), no
standard-library module that 3.12 to 3.14 removed (PEP 594, distutils, imp), and no upper
bound on Python in the package metadata.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

from .conftest import REPO

INSTALLER = Path(REPO) / "installer"
# Removed from the standard library by 3.14 (PEP 594 in 3.13; distutils, imp, asynchat,
# asyncore, smtpd in 3.12).
REMOVED = {
    "aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt", "distutils",
    "imghdr", "imp", "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "smtpd",
    "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
}  # fmt: skip


def _modules():
    return sorted(INSTALLER.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_parses_with_the_oldest_supported_python(path):
    oldest = (3, 8) if path.name == "bootstrap.py" else (3, 10)
    ast.parse(path.read_text(), filename=str(path), feature_version=oldest)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_imports_nothing_python_3_14_removed(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & REMOVED


def test_the_installer_imports_only_the_standard_library():
    """bootstrap.py runs it from a bare checkout with the system Python, nothing installed."""
    allowed_elsewhere = {
        "tljh_plugin.py": {"pluggy"},  # runs in TLJH's hub environment
        "gpu_hook.py": {"yaml"},  # in the hub's process: TLJH's config.yaml (JupyterHub's PyYAML)
        "user_env_probe.py": {"packaging", "pip", "conda"},  # in the users' environment
        "kernel_gpu_errors.py": {"ipykernel"},  # in every student kernel
    }
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )  # fmt: skip
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or top == "dlcourse_installer"
                    or top in allowed_elsewhere.get(path.name, set())
                    or (path.name == "hub_passwords.py" and top == "bcrypt")  # the hub's venv
                    # a dependency of dlcourse, in bootstrap.py's venv; imported only when a
                    # web-config hash is made, never in a dry run
                    or (path.name == "webauth.py" and top == "bcrypt")
                )
                assert ok, f"{path.name} imports {name}"


def test_no_upper_bound_on_python():
    pyproject = (Path(REPO) / "pyproject.toml").read_text()
    (requires,) = re.findall(r'^requires-python = "([^"]+)"', pyproject, re.MULTILINE)
    assert requires == ">=3.10"
