"""Maps a process to the JupyterHub user who owns it, from /proc alone.

Order, most specific first:
1. the systemd unit in /proc/<pid>/cgroup: TLJH runs each user's server as
   ``jupyter-<name>.service`` (SystemdSpawner), and kernels inherit the cgroup;
2. ``JUPYTERHUB_USER`` in /proc/<pid>/environ: set for every single-user server and the
   kernels it starts, whatever the spawner;
3. the Linux account of the process, less the configured prefix (TLJH: ``jupyter-``).

The parsers are pure functions; ``OwnerResolver`` does the reads. A process that vanishes
mid-read, an unknown uid or garbage in environ gives None (logged at debug), never an error.
"""

from __future__ import annotations

import logging
import pwd
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)


def unit_user(cgroup_text: str, prefix: str) -> str | None:
    """The user of a ``<prefix><name>.service`` unit named in a /proc/<pid>/cgroup file."""
    pattern = re.compile(rf"/{re.escape(prefix)}([^/]+)\.service(?:/|$)")
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        match = pattern.search(path)
        if match:
            return match.group(1)
    return None


def environ_user(environ: bytes) -> str | None:
    """JUPYTERHUB_USER from a NUL-separated /proc/<pid>/environ."""
    for entry in environ.split(b"\0"):
        if entry.startswith(b"JUPYTERHUB_USER="):
            value = entry[len(b"JUPYTERHUB_USER=") :].decode(errors="replace").strip()
            return value or None
    return None


def status_uid(status_text: str) -> int | None:
    """The real uid from /proc/<pid>/status ("Uid:\\treal\\teffective\\tsaved\\tfs")."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


def account_user(account: str, prefix: str) -> str:
    return account[len(prefix) :] if prefix and account.startswith(prefix) else account


@lru_cache(maxsize=4096)
def account_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@dataclass(frozen=True)
class Attribution:
    """Who owns a process, and by which rule: "unit", "environ", "prefixed-account" or
    "account" (a Linux account without the hub prefix: root, daemons, the lecturer)."""

    user: str
    via: str

    @property
    def hub_user(self) -> bool:
        """True when the process belongs to a hub user's server, not just to some account."""
        return self.via != "account"


class OwnerResolver:
    def __init__(self, procfs: Path = Path("/proc"), prefix: str = "jupyter-") -> None:
        self.procfs = procfs
        self.prefix = prefix

    def owner(self, pid: int) -> str | None:
        """The hub user (or Linux account) that owns pid; None if it cannot be told."""
        found = self.attribution(pid)
        return found.user if found else None

    def attribution(self, pid: int) -> Attribution | None:
        """The owner of pid and which rule named it; None if it cannot be told."""
        base = self.procfs / str(pid)
        try:
            user = unit_user((base / "cgroup").read_text(errors="replace"), self.prefix)
            if user:
                return Attribution(user, "unit")
            try:
                user = environ_user((base / "environ").read_bytes())
            except PermissionError:
                user = None  # not root: other users' environ is closed; the uid still tells
            if user:
                return Attribution(user, "environ")
            uid = status_uid((base / "status").read_text(errors="replace"))
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            log.debug("pid %d vanished while its owner was read", pid)
            return None
        except OSError as exc:
            log.debug("pid %d: owner unreadable: %s", pid, exc)
            return None
        name = account_name(uid) if uid is not None else None
        if name is None:
            log.debug("pid %d: uid %s has no account, skipped", pid, uid)
            return None
        prefixed = bool(self.prefix) and name.startswith(self.prefix)
        return Attribution(
            account_user(name, self.prefix), "prefixed-account" if prefixed else "account"
        )
