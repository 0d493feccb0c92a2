"""Which hub user a process belongs to, on evidence a student cannot forge for someone else.

What a student controls: their processes' environment (``JUPYTERHUB_USER``), names and
arguments, and cgroups delegated to their own systemd user manager. What they do not: the
uid their processes run as, and root's cgroups under ``/system.slice``. So a process
counts for hub user X only by (first match wins):

1. X's systemd unit, at exactly ``/system.slice/<prefix>X.service`` (TLJH's SystemdSpawner
   unit; kernels inherit it) in /proc/<pid>/cgroup. A ``jupyter-X.service`` anywhere else,
   e.g. under a student's own ``user@1001.service``, proves nothing. Needs a prefix.
2. X's own Linux account: ``<prefix>X`` with TLJH's hashed long-name form, or X itself when
   the prefix is empty (JupyterHub's LocalProcessSpawner); see ``roster.system_account``.
3. ``JUPYTERHUB_USER=X`` when the process runs as X's own account or as the one shared
   account the spawner runs every server under (``--user.spawner-account``).

With a hub configured only its users count; everything else is unattributed. Without a
hub a process no rule names still has its Linux account, shown as a user (v1 behaviour)
but not counted as a student by the kernels and host collectors.

``read_evidence`` does the reads; ``attribute`` is pure. A process that vanishes mid-read
or has garbage in environ gives no evidence or partial evidence, never an error.
"""

from __future__ import annotations

import logging
import pwd
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..untrusted import label_value
from .roster import Roster, SharedRoster, keep_user, system_account

log = logging.getLogger(__name__)

SYSTEM_SLICE = "/system.slice/"


def unit_user(cgroup_text: str, prefix: str) -> str | None:
    """X of a ``/system.slice/<prefix>X.service`` cgroup named in /proc/<pid>/cgroup."""
    if not prefix:
        return None  # every system service would be a "user"
    pattern = re.compile(rf"{re.escape(SYSTEM_SLICE + prefix)}([^/]+)\.service(?:/|$)")
    for line in cgroup_text.splitlines():
        match = pattern.match(line.split(":", 2)[-1])
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


@lru_cache(maxsize=4096)
def account_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@dataclass(frozen=True)
class Evidence:
    """What /proc says about a process, before anything is believed."""

    unit_user: str | None = None  # X of /system.slice/<prefix>X.service
    account: str | None = None  # the account of the real uid; None: a uid without one
    environ_user: str | None = None  # JUPYTERHUB_USER, which anyone can set


@dataclass(frozen=True)
class Policy:
    prefix: str = "jupyter-"
    spawner_account: str | None = None
    hub: bool = False  # a hub is configured: only its users are students


@dataclass(frozen=True)
class Attribution:
    """The owner of a process and the rule that named it: "unit", "account", "environ",
    or "linux-account" (no hub: the account stands in; root, daemons, the lecturer)."""

    user: str
    via: str

    @property
    def hub_user(self) -> bool:
        """True when the owner is a student (hub user), not just some account."""
        return self.via != "linux-account"


def account_user(account: str, policy: Policy, roster: Roster | None) -> str | None:
    """The hub user whose own account this is; without the hub's list, by the prefix."""
    if roster is not None:
        return roster.by_account.get(account)
    if policy.prefix and account.startswith(policy.prefix):
        return account[len(policy.prefix) :]
    return None


def attribute(evidence: Evidence, policy: Policy, roster: Roster | None) -> Attribution | None:
    """The rules of the module docstring; roster None: the hub's users are not known."""
    found: Attribution | None = None
    account, claimed = evidence.account, evidence.environ_user
    if evidence.unit_user:
        found = Attribution(label_value(evidence.unit_user), "unit")
    elif account and (user := account_user(account, policy, roster)):
        found = Attribution(label_value(user), "account")
    elif (
        claimed
        and account
        and account in (policy.spawner_account, system_account(claimed, policy.prefix))
    ):
        found = Attribution(label_value(claimed), "environ")
    if policy.hub:
        known = roster is not None and found is not None and found.user in roster.users
        return found if known else None
    if found is None and account:
        return Attribution(label_value(account), "linux-account")
    return found


class OwnerResolver:
    """Reads a process's evidence from /proc and judges it by the current rules and roster."""

    def __init__(
        self,
        procfs: Path = Path("/proc"),
        prefix: str = "jupyter-",
        spawner_account: str | None = None,
        roster: SharedRoster | None = None,
    ) -> None:
        self.procfs = procfs
        self.prefix = prefix
        self.roster = roster
        self.policy = Policy(prefix, spawner_account, roster is not None and roster.hub_configured)

    def owner(self, pid: int) -> str | None:
        """The hub user (or Linux account) that owns pid; None if it cannot be told."""
        found = self.attribution(pid)
        return found.user if found else None

    def attribution(self, pid: int) -> Attribution | None:
        evidence = self.evidence(pid)
        return self.judge(evidence) if evidence is not None else None

    def judge(self, evidence: Evidence) -> Attribution | None:
        return attribute(evidence, self.policy, self._roster())

    def keep(self, user: str, last_seen: float, now: float) -> bool:
        """Whether a user last seen with a process at last_seen keeps their series."""
        return keep_user(user, last_seen, now, self.policy.hub, self._roster())

    def _roster(self) -> Roster | None:
        return self.roster.current if self.roster is not None else None

    def account_evidence(self, uid: int | None) -> Evidence:
        """The evidence of a process known only by its uid (a kernel log line)."""
        return Evidence(account=account_name(uid) if uid is not None else None)

    def evidence(self, pid: int) -> Evidence | None:
        """What /proc/<pid> says; None if the process is gone or unreadable."""
        base = self.procfs / str(pid)
        try:
            unit = unit_user((base / "cgroup").read_text(errors="replace"), self.prefix)
            if unit:
                return Evidence(unit)  # the first rule settles it: nothing else to read
            uid = status_uid((base / "status").read_text(errors="replace"))
            try:
                claimed = environ_user((base / "environ").read_bytes())
            except PermissionError:
                claimed = None  # not root: other users' environ is closed; the uid still tells
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            log.debug("pid %d vanished while its owner was read", pid)
            return None
        except OSError as exc:
            log.debug("pid %d: owner unreadable: %s", pid, exc)
            return None
        account = account_name(uid) if uid is not None else None
        if account is None:
            log.debug("pid %d: uid %s has no account", pid, uid)
        return Evidence(None, account, claimed)
