"""Files with an exact content, mode and owner; secrets that are made once."""

from __future__ import annotations

import secrets

from dlcourse_installer.machine import users
from dlcourse_installer.machine.host import FileMeta, Host
from dlcourse_installer.rendered.generated import GeneratedFile


def ensure_generated(host: Host, f: GeneratedFile, *, planning: bool = False) -> bool:
    """One entry of the registry in place. True if anything changed.

    A file for a service account that does not exist yet (its package comes in a later
    step) is written root-only for now; that step hands it over (``ensure_owner``). A dry
    run (``planning``) shows the final owner.
    """
    owner, group, mode = f.owner, f.group, f.mode
    accounts = _account_exists(host, "passwd", owner) and _account_exists(host, "group", group)
    if not (accounts or planning):
        owner, group, mode = "root", "root", mode & 0o700
    if f.is_secret:
        return ensure_secret(host, f.path, mode=mode, owner=owner, group=group)
    if f.derived is not None:
        current = host.read_text(f.path)
        if planning:  # shown, not made: it holds secrets, and a dry run runs on the stdlib
            content = current or ""
        else:
            content = f.derived(lambda path: (host.read_text(path) or "").strip(), current)
        return ensure_file(host, f.path, content, mode=mode, owner=owner, group=group, secret=True)
    return ensure_file(host, f.path, f.content, mode=mode, owner=owner, group=group,
                       origin=f.origin)  # fmt: skip


def ensure_owner(host: Host, f: GeneratedFile) -> bool:
    """The owner and mode of the registry, for a file written before its account existed."""
    if not host.is_regular_file(f.path):
        return False
    return ensure_attrs(host, f.path, mode=f.mode, owner=f.owner, group=f.group)


def _account_exists(host: Host, database: str, name: str) -> bool:
    if name == "root":
        return True
    return users.user_exists(host, name) if database == "passwd" else users.group_exists(host, name)


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
