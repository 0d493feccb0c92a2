"""Linux accounts, one verb each."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from dlcourse_installer.machine.host import Host


def user_exists(host: Host, name: str) -> bool:
    return host.query(["getent", "passwd", name]).ok


def group_exists(host: Host, name: str) -> bool:
    return host.query(["getent", "group", name]).ok


def ensure_system_user(host: Host, name: str) -> bool:
    """A system account with no home and no login shell, for one service."""
    if user_exists(host, name):
        return False
    host.run(
        [
            "useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name,
        ]
    )  # fmt: skip
    return True


@contextmanager
def temporary_account(host: Host, prefix: str = "dlcourse-check") -> Iterator[str]:
    """An unprivileged account with no home and no login, removed afterwards."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    host.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", name])  # fmt: skip
    try:
        yield name
    finally:
        host.run(["userdel", name])
