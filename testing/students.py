"""Processes run as a student: the students' own Python, never the checkout's.

A checkout may sit where other accounts cannot enter (a root clone under /root, any 0700
folder): its ``.venv`` and its files are not a student's to run or read. So a process run
as a student takes the students' world-readable environment (``DLCOURSE_USERENV``, built by
``make userenv``), its code on the command line (never a path into the checkout), its own
group only (not root's supplementary groups), and a working folder it may enter.
tests/testing/test_private_checkout.py runs these helpers from a 0700 copy of the checkout.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_USER_ENV = "/opt/dlcourse-dev/user-env"


def user_env() -> Path:
    """The environment students' servers, kernels and test processes run from."""
    return Path(os.environ.get("DLCOURSE_USERENV", DEFAULT_USER_ENV))


def python_as(
    account: pwd.struct_passwd,
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """``python -c code args`` as ``account`` (root only), from the students' environment;
    ``env`` adds to a minimal environment (HOME, PATH); ``popen``: stdin, stdout, text..."""
    home = account.pw_dir if os.path.isdir(account.pw_dir) else "/"
    return subprocess.Popen(
        [str(user_env() / "bin" / "python"), "-c", code, *args],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        env={"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", **(env or {})},
        cwd=home,
        **popen,
    )
