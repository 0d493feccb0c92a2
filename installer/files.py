"""Files with an exact content, mode and owner; secrets that are made once."""

from __future__ import annotations

import secrets

from dlcourse_installer.host import FileMeta, Host


def ensure_file(
    host: Host,
    path: str,
    content: str,
    *,
    mode: int = 0o644,
    owner: str = "root",
    group: str = "root",
) -> bool:
    """Write ``content`` unless it is already there, as it should be. True if it changed."""
    if host.read_text(path) == content:
        return ensure_attrs(host, path, mode=mode, owner=owner, group=group)
    host.write_file(path, content, mode=mode, owner=owner, group=group)
    return True


def ensure_attrs(host: Host, path: str, *, mode: int, owner: str, group: str) -> bool:
    if host.file_meta(path) == FileMeta(mode, owner, group):
        return False
    host.set_attrs(path, mode=mode, owner=owner, group=group)
    return True


def ensure_secret(
    host: Host, path: str, *, mode: int = 0o600, owner: str = "root", group: str = "root"
) -> bool:
    """A random token, made once: rerunning the installer never rotates a credential."""
    if host.exists(path):
        return ensure_attrs(host, path, mode=mode, owner=owner, group=group)
    host.write_file(
        path, secrets.token_hex(32) + "\n", mode=mode, owner=owner, group=group, secret=True
    )
    return True


def ensure_absent(host: Host, path: str) -> bool:
    if not host.exists(path):
        return False
    host.remove(path)
    return True
