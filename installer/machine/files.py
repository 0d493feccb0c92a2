"""Files with an exact content, mode and owner; secrets that are made once."""

from __future__ import annotations

import secrets

from dlcourse_installer.machine.host import FileMeta, Host


def ensure_file(
    host: Host,
    path: str,
    content: str,
    *,
    mode: int = 0o644,
    owner: str = "root",
    group: str = "root",
    origin: str = "",
    secret: bool = False,
) -> bool:
    """Write ``content`` unless it is already there, as it should be. True if it changed.

    A symlink at ``path`` is replaced by the file, never written through.
    """
    if host.is_regular_file(path) and host.read_text(path) == content:
        return ensure_attrs(host, path, mode=mode, owner=owner, group=group)
    host.write_file(
        path, content, mode=mode, owner=owner, group=group, origin=origin, secret=secret
    )
    return True


def ensure_attrs(host: Host, path: str, *, mode: int, owner: str, group: str) -> bool:
    if host.file_meta(path) == FileMeta(mode, owner, group):
        return False
    host.set_attrs(path, mode=mode, owner=owner, group=group)
    return True


def ensure_secret(
    host: Host, path: str, *, mode: int = 0o600, owner: str = "root", group: str = "root"
) -> bool:
    """A random token, made once: rerunning the installer never rotates a credential. A
    symlink at ``path`` is no secret: it is replaced by a fresh one."""
    if host.is_regular_file(path):
        return ensure_attrs(host, path, mode=mode, owner=owner, group=group)
    host.write_file(path, new_secret(), mode=mode, owner=owner, group=group, secret=True)
    return True


def new_secret() -> str:
    """256 random bits, hex: fits a token header, a password field and a URL alike."""
    return secrets.token_hex(32) + "\n"


def ensure_absent(host: Host, path: str) -> bool:
    if not host.exists(path):
        return False
    host.remove(path)
    return True
