"""The ``hub`` collector: JupyterHub users, their groups, activity and servers.

Polls the hub's REST API in the background (``sources.hub``); scrapes only render the last
answer. Sample output::

    dlcourse_hub_up 1
    dlcourse_hub_user_info{admin="false",user="alice"} 1
    dlcourse_hub_user_group_info{group="section-a",user="alice"} 1
    dlcourse_hub_user_last_activity_timestamp_seconds{user="alice"} 1.7641e+09
    dlcourse_hub_user_servers{state="ready",user="alice"} 1
    dlcourse_hub_user_servers{state="pending",user="alice"} 0
    dlcourse_hub_user_server_started_timestamp_seconds{user="alice"} 1.7641e+09
    dlcourse_hub_users_truncated 0

While the hub cannot be read, only ``dlcourse_hub_up 0`` is exported: stale users would
look current. Each successful poll also tells the shared roster who the students are (see
``sources.roster``); a hub with more users than ``--hub.max-users`` is read up to the cap,
``dlcourse_hub_users_truncated`` says so and one line is logged. After a failure the next
attempts back off (one interval, then two, up to `MAX_BACKOFF_INTERVALS`), so a hub that is
down or refusing the token is not hammered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric

from ..metricdefs import gauge
from ..sources.hub import HubClient, HubError, HubSnapshot, HubUser
from ..sources.roster import SharedRoster
from .base import Collector

log = logging.getLogger(__name__)

SERVER_STATES = ("ready", "pending")
MAX_BACKOFF_INTERVALS = 4

UP = gauge("dlcourse_hub_up", "1 if the last poll of the JupyterHub API succeeded, else 0.")
USER_INFO = gauge(
    "dlcourse_hub_user_info",
    "One series per JupyterHub user, with whether the user is a hub admin.",
    "user",
    "admin",
)
GROUP_INFO = gauge(
    "dlcourse_hub_user_group_info",
    "The user is a member of the hub group (course section, team).",
    "user",
    "group",
)
LAST_ACTIVITY = gauge(
    "dlcourse_hub_user_last_activity_timestamp_seconds",
    "Unix time of the user's last activity as the hub records it.",
    "user",
)
SERVERS = gauge(
    "dlcourse_hub_user_servers",
    "The user's servers by state: ready, or pending (starting or stopping).",
    "user",
    "state",
)
SERVER_STARTED = gauge(
    "dlcourse_hub_user_server_started_timestamp_seconds",
    "Unix time the user's default server started, while it runs.",
    "user",
)
TRUNCATED = gauge(
    "dlcourse_hub_users_truncated",
    "1 if the hub has more users than --hub.max-users: the rest are not listed.",
)
METRICS = (UP, USER_INFO, GROUP_INFO, LAST_ACTIVITY, SERVERS, SERVER_STARTED, TRUNCATED)


def server_counts(user: HubUser) -> dict[str, int]:
    """The user's servers by state; a stopping server counts as pending."""
    counts = dict.fromkeys(SERVER_STATES, 0)
    for server in user.servers:
        if server.pending:
            counts["pending"] += 1
        elif server.ready:
            counts["ready"] += 1
    return counts


def default_server_started(user: HubUser) -> float | None:
    for server in user.servers:
        if server.name == "" and server.ready and not server.pending:
            return server.started
    return None


class HubCollector(Collector):
    name = "hub"

    def __init__(
        self,
        client: HubClient,
        interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        roster: SharedRoster | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.clock = clock
        self.roster = roster
        self._truncated = False
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: HubError | None = None

    async def poll(self) -> HubSnapshot:
        if self._last_error is not None and self.clock() < self._retry_at:
            # Backing off: the same error again, so the scheduler logs nothing new.
            raise self._last_error.with_traceback(None)
        try:
            snapshot = await self.client.fetch_users()
        except HubError as exc:
            self._failures += 1
            wait = min(2 ** (self._failures - 1), MAX_BACKOFF_INTERVALS) * self.interval
            # Half an interval early, so the retry falls on the scheduler's tick, not after it.
            self._retry_at = self.clock() + wait - self.interval / 2
            self._last_error = exc
            raise
        self._failures, self._last_error = 0, None
        if snapshot.truncated != self._truncated:
            self._truncated = snapshot.truncated
            if snapshot.truncated:
                log.warning(
                    "the hub has more users than --hub.max-users=%d: only the first %d are read",
                    self.client.max_users,
                    len(snapshot.users),
                )
        if self.roster is not None:
            self.roster.update((user.name, user.full_name) for user in snapshot.users)
        return snapshot

    def render(self, snapshot: HubSnapshot | None) -> Iterator[Metric]:
        up = UP.family()
        up.add_metric([], 0.0 if snapshot is None else 1.0)
        yield up
        if snapshot is None:
            return
        info, groups, activity, servers, started, truncated = (m.family() for m in METRICS[1:])
        truncated.add_metric([], 1.0 if snapshot.truncated else 0.0)
        for user in snapshot.users:
            info.add_metric([user.name, "true" if user.admin else "false"], 1.0)
            for group in user.groups:
                groups.add_metric([user.name, group], 1.0)
            if user.last_activity is not None:
                activity.add_metric([user.name], user.last_activity)
            for state, count in server_counts(user).items():
                servers.add_metric([user.name, state], count)
            since = default_server_started(user)
            if since is not None:
                started.add_metric([user.name], since)
        yield from (info, groups, activity, servers, started, truncated)
