"""Maps a process to the JupyterHub user who owns it, from /proc alone.

Order, most specific first:
1. the systemd unit in /proc/<pid>/cgroup: TLJH runs each user's server as
   ``jupyter-<name>.service`` (SystemdSpawner), and kernels inherit the cgroup;
2. ``JUPYTERHUB_USER`` in /proc/<pid>/environ: set for every single-user server and the
   kernels it starts, whatever the spawner;
3. the Linux account of the process: TLJH names the account of hub user X ``jupyter-X``,
   shortened with a hash when that is long (``tljh_account``).

The parsers are pure functions; ``OwnerResolver`` does the reads. A process that vanishes
mid-read, an unknown uid or garbage in environ gives None (logged at debug), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import pwd
import re
from collections.abc import Iterable
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


# TLJH keeps a prefixed name shorter than this as it is; a longer one is cut to this length
# and gets "-" and 5 hex digits of its SHA-256, so that it fits useradd's 32 characters
# (tljh/normalize.py generate_system_username, applied to "jupyter-" + the hub name by
# tljh/user_creating_spawner.py; TLJH 2.0.0). tests/tljh_conformance checks it against TLJH.
TLJH_SHORT_NAME = 26


def tljh_account(hub_user: str, prefix: str) -> str:
    """The Linux account TLJH runs this hub user's server as."""
    name = prefix + hub_user
    if len(name) < TLJH_SHORT_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:5]
    return f"{name[:TLJH_SHORT_NAME]}-{digest}"


def account_user(account: str, prefix: str, hub_users: Iterable[str] = ()) -> str | None:
    """The hub user whose account this is by TLJH's naming; None for any other account.

    A short name is the account less the prefix. A long one kept only its start and a hash:
    it is told among ``hub_users`` (the hub's user list), never guessed from the start.
    """
    if not prefix or not account.startswith(prefix):
        return None
    if len(account) < TLJH_SHORT_NAME:
        return account[len(prefix) :]
    return next((user for user in hub_users if tljh_account(user, prefix) == account), None)


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
        user = account_user(name, self.prefix)
        return Attribution(user, "prefixed-account") if user else Attribution(name, "account")
