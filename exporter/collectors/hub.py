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
look current. A hub with more users than ``--hub.max-users`` is read up to the cap and
``dlcourse_hub_users_truncated`` says so. On by default where a hub URL and token are set.
The ``hub`` source (``sources.hub``) reads the API, backs off after failures and tells the
attribution rules who the students are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.metrics_core import Metric

from ..metricdefs import gauge
from ..model import HubSnapshot, HubUser
from ..options import Option, count, seconds
from ..untrusted import redact_url
from .base import Collector

SERVER_STATES = ("ready", "pending")

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


def hub_url_problem(url: str) -> str | None:
    """Why url cannot be the hub API URL, or None. Checks the form only: nothing is asked."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "must not contain spaces"
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host"
    return None


class HubCollector(Collector):
    name = "hub"
    description = "JupyterHub users, groups and servers (on when a hub is configured)"
    sources = ("hub",)
    metrics = METRICS
    options = (
        Option(
            "hub.url",
            "JupyterHub API URL, e.g. http://127.0.0.1:951/hub/api (also JUPYTERHUB_API_URL)",
            # Checked by problems(), which shows a URL with credentials redacted.
            fallback_env=("JUPYTERHUB_API_URL",),
        ),
        Option(
            "hub.token-file",
            "file holding the hub API token (or the token itself in DLCOURSE_HUB_TOKEN or "
            "JUPYTERHUB_API_TOKEN)",
            parse=Path,
            secret=True,
            secret_env=("DLCOURSE_HUB_TOKEN", "JUPYTERHUB_API_TOKEN"),
        ),
        Option("hub.interval", "seconds between polls of the hub API", 15.0, seconds(0.1, 3600)),
        Option(
            "hub.timeout",
            "seconds before a hub API request gives up, all of it",
            5.0,
            seconds(0.1, 600),
        ),
        Option(
            "hub.max-users",
            "hub users read at most; past it dlcourse_hub_users_truncated is 1",
            20_000,
            count(1, 1_000_000),
        ),
    )

    def enabled_by_default(self, values: Mapping[str, Any]) -> bool:
        return bool(values["hub.url"] and values["hub.token"])  # where there is a hub to ask

    def problems(self, values: Mapping[str, Any], enabled: bool, explicit: bool) -> list[str]:
        url, found = values["hub.url"], []
        problem = hub_url_problem(url) if url else None
        if problem:
            found.append(f"hub URL {redact_url(url)!r} {problem}")
        if url and not values["hub.token"]:
            found.append(
                "hub URL is set but no token: use --hub.token-file or JUPYTERHUB_API_TOKEN"
            )
        if enabled and explicit and not url:
            found.append("collector hub is enabled but no hub URL is set: use --hub.url")
        return found

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
            for state, number in server_counts(user).items():
                servers.add_metric([user.name, state], number)
            since = default_server_started(user)
            if since is not None:
                started.add_metric([user.name], since)
        yield from (info, groups, activity, servers, started, truncated)
