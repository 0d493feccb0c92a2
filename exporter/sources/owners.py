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

On Kubernetes (``--attribution=kubernetes``, ``PodOwners``) none of these rules hold: every
student's processes run as uid 1000 and a student sets their pod's environment. There a
process counts for X only when its cgroup names a pod that KubeSpawner made for X
(``sources.kubepods``), as the API server last listed them; while the API is unreachable,
nothing is attributed.

The evidence is read from /proc by ``sources.proctable`` (one walk per cycle); here it
is parsed (``unit_user``, ``environ_user``, ``status_uid``) and judged (``attribute``, pure;
``Owners``, with the hub's current roster). Garbage in a file gives no evidence or partial
evidence, never an error.
"""

from __future__ import annotations

import pwd
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from ..model import HUB_USER_VARIABLE, Attribution, Evidence
from ..untrusted import label_value
from .kubepods import PodDirectory
from .procfs import cgroup_paths
from .roster import Roster, SharedRoster, keep_user, system_account

SYSTEM_SLICE = "/system.slice/"
MAX_JUDGED = 10_000  # distinct kinds of evidence remembered (a student can make up many)


def unit_user(cgroup_lines: Iterable[str], prefix: str) -> str | None:
    """X of a ``/system.slice/<prefix>X.service`` cgroup named in /proc/<pid>/cgroup."""
    if not prefix:
        return None  # every system service would be a "user"
    pattern = re.compile(rf"{re.escape(SYSTEM_SLICE + prefix)}([^/]+)\.service(?:/|$)")
    for path in cgroup_paths(cgroup_lines).values():
        match = pattern.match(path)
        if match:
            return match.group(1)
    return None


def environ_user(environ: Mapping[str, str]) -> str | None:
    """JUPYTERHUB_USER from a process's environment variables."""
    return environ.get(HUB_USER_VARIABLE, "").strip() or None


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
class Policy:
    prefix: str = "jupyter-"
    spawner_account: str | None = None
    hub: bool = False  # a hub is configured: only its users are students


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


class Owners:
    """The rules above with the hub's current roster: whom a process's evidence names."""

    def __init__(
        self,
        prefix: str = "jupyter-",
        spawner_account: str | None = None,
        roster: SharedRoster | None = None,
    ) -> None:
        self.prefix = prefix
        self.roster = roster
        self.policy = Policy(prefix, spawner_account, roster is not None and roster.hub_configured)
        # Judgements under the current roster: the same evidence comes back every cycle.
        self._judged: dict[Evidence, Attribution | None] = {}
        self._judged_with: Roster | None = None
        self._lock = threading.Lock()  # sources judge from their own threads

    def judge(self, evidence: Evidence) -> Attribution | None:
        with self._lock:
            roster = self._roster()
            if roster is not self._judged_with or len(self._judged) > MAX_JUDGED:
                self._judged, self._judged_with = {}, roster
            if evidence not in self._judged:
                self._judged[evidence] = attribute(evidence, self.policy, roster)
            return self._judged[evidence]

    def keep(self, user: str, last_seen: float, now: float) -> bool:
        """Whether a user last seen with a process at last_seen keeps their series."""
        return keep_user(user, last_seen, now, self.policy.hub, self._roster())

    def _roster(self) -> Roster | None:
        return self.roster.current if self.roster is not None else None


def account_evidence(uid: int | None) -> Evidence:
    """The evidence of a process known only by its uid (a kernel log line)."""
    return Evidence(account=account_name(uid) if uid is not None else None)


class PodOwners:
    """``Owners`` on Kubernetes: the student of the pod a process's cgroup names, nobody
    else; with a hub configured, only the hub's users."""

    prefix = ""  # no systemd units per user in a pod

    def __init__(self, pods: PodDirectory, roster: SharedRoster) -> None:
        self.pods = pods
        self.roster = roster

    def judge(self, evidence: Evidence) -> Attribution | None:
        student = self.pods.student(evidence.pod_uid)
        if student is None:
            return None
        current = self.roster.current
        if self.roster.hub_configured and (current is None or student not in current.users):
            return None
        return Attribution(student, "pod")

    def keep(self, user: str, last_seen: float, now: float) -> bool:
        hub = self.roster.hub_configured
        return keep_user(user, last_seen, now, hub_configured=hub, roster=self.roster.current)


# Whichever rules this exporter runs by (``--attribution``): what the sources judge with.
OwnerRules = Owners | PodOwners
