"""The hub's users, as the attribution rules (``sources.owners``) need them.

With a hub configured, only its users are students: the ``hub`` collector hands every
successful poll's users to a ``SharedRoster``, and the collectors that attribute processes
read its latest ``Roster``. Until the first poll succeeds nobody is a student (their GPU
memory counts as unattributed); after that the last good list stays while the hub is down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# TLJH names a hub user's account "jupyter-<name>", and a name of 26 characters or more
# "<first 26 characters>-<5 hex digits of its SHA-256>", to stay under 32 characters
# (the-littlest-jupyterhub 2.0.0, tljh/normalize.py generate_system_username, applied to
# "jupyter-" + name in tljh/user_creating_spawner.py).
TLJH_TRUNCATE_AT = 26
TLJH_HASH_DIGITS = 5


def system_account(user: str, prefix: str) -> str:
    """The Linux account a spawner runs hub user `user` under: TLJH's naming with a prefix,
    the hub name itself without one (JupyterHub's LocalProcessSpawner)."""
    if not prefix:
        return user
    name = prefix + user
    if len(name) < TLJH_TRUNCATE_AT:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:TLJH_HASH_DIGITS]
    return f"{name[:TLJH_TRUNCATE_AT]}-{digest}"


@dataclass(frozen=True)
class Roster:
    """The hub's users at one moment: label names, and the Linux accounts they own."""

    users: frozenset[str] = frozenset()
    by_account: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, users: Iterable[tuple[str, str]], prefix: str) -> Roster:
        """From (label name, full name) pairs; accounts derive from the full name."""
        pairs = list(users)
        return cls(
            frozenset(name for name, _ in pairs),
            {system_account(full, prefix): name for name, full in pairs},
        )


class SharedRoster:
    """The latest Roster, swapped whole (threads only ever read a complete one)."""

    def __init__(self, hub_configured: bool, prefix: str = "jupyter-") -> None:
        self.hub_configured = hub_configured
        self.prefix = prefix
        self.current: Roster | None = None

    def update(self, users: Iterable[tuple[str, str]]) -> None:
        self.current = Roster.of(users, self.prefix)


# A user who is not in the hub (or, without a hub, an account) and has had no process for
# this long drops out of the per-user series: made-up names cannot pile up forever.
USER_RETENTION_SECONDS = 3600.0


def keep_user(
    user: str, last_seen: float, now: float, hub_configured: bool, roster: Roster | None
) -> bool:
    """Whether a user seen at last_seen still has per-user series: with a hub, exactly the
    hub's users; without one, everyone seen within USER_RETENTION_SECONDS."""
    if hub_configured:
        return roster is not None and user in roster.users
    return now - last_seen <= USER_RETENTION_SECONDS
