"""What the suite runs as a student runs from any checkout (issue 21, item 4).

`make test` from a clone other accounts cannot enter (root's, under /root; any 0700
folder) ran the checkout's `.venv/bin/python` as a student: PermissionError. A process run
as a student takes the students' own environment and its code on the command line
(``dlcourse_testing.students``). tests/testing/test_private_checkout.py runs this file from
a 0700 copy of the checkout; the rule below keeps every other test file to it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlcourse_testing import students
from dlcourse_testing.students import python_as, user_env

REPO = Path(__file__).resolve().parents[2]
PRIVATE = os.environ.get("DLCOURSE_PRIVATE_CHECKOUT") == "1"  # set by the 0700 run


@pytest.mark.live
def test_a_student_process_runs_the_students_python(make_linux_user):
    account = make_linux_user()
    code = "import os, sys; print(os.getuid(), sys.executable, os.access(sys.argv[1], os.R_OK))"
    process = python_as(account, code, str(REPO / "pyproject.toml"), stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    uid, python, readable = out.decode().split()
    assert int(uid) == account.pw_uid and python.startswith(str(user_env()))
    if PRIVATE:  # the copy, its Python and its modules really are out of the student's reach
        assert readable == "False"
        for own in (sys.executable, students.__file__):
            assert Path(own).absolute().is_relative_to(REPO), own


def starts_processes_as_another_account(call: ast.Call) -> bool:
    return any(keyword.arg in ("user", "group") for keyword in call.keywords)


def checkout_names(tree: ast.Module) -> set[str]:
    """Module-level names bound to something derived from ``__file__`` (files of the checkout)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and "__file__" in ast.unparse(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_nothing_of_the_checkout_is_run_as_another_account():
    """A subprocess call with user=/group= names neither the test runner's Python
    (sys.executable, in the checkout's .venv) nor a file of the checkout."""
    found = []
    for path in sorted([*REPO.glob("tests/**/*.py"), *REPO.glob("testing/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        forbidden = {"sys.executable", "__file__", *checkout_names(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and starts_processes_as_another_account(node):
                text = ast.unparse(node)
                found += [
                    f"{path.relative_to(REPO)}:{node.lineno}: {name}"
                    for name in sorted(forbidden)
                    if name in text
                ]
    assert found == []
