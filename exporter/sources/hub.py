"""The JupyterHub REST API: every user with admin flag, groups, activity and servers.

Only ``GET {hub}/users`` is called, with a token whose role holds exactly ``list:users``,
``read:users:name``, ``read:users:activity``, ``read:users:groups`` and ``read:servers``
(docs/hub.md). Users' own servers are never called: a request there would count as activity
and keep the idle culler from stopping an idle server.

Pagination (JupyterHub >= 2, so every 4.x to 6.x hub): the first page says the total and
the hub's page size; the remaining pages are fetched concurrently, a few at a time. A hub
that answers with a plain list (no pagination) gives everything in that list.

Parsing is pure (`parse_page`, `parse_user`, `parse_timestamp`); `HubClient` does the
requests. Errors carry stable one-line texts (no timings, no counters), because the
scheduler logs a collector's failure again only when its text changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

log = logging.getLogger(__name__)

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
PAGE_SIZE = 200  # JupyterHub's default api_page_max_limit; the hub may cap it lower

# The scope that makes the hub include each field of a user model.
FIELD_SCOPES = {
    "name": "read:users:name",
    "admin": "read:users:name",
    "groups": "read:users:groups",
    "last_activity": "read:users:activity",
    "servers": "read:servers",
}
SERVER_FIELDS = ("ready", "pending", "started")


class HubError(Exception):
    """The hub API could not be read; str() is one stable line."""


class HubUnreachable(HubError):
    """No answer: connection refused, DNS, timeout."""


class HubAuthError(HubError):
    """401/403: the token is wrong or lacks a scope."""


class HubHttpError(HubError):
    """Any other HTTP error status."""


class HubResponseError(HubError):
    """An answer that is not what the API documents: bad JSON, missing fields."""


@dataclass(frozen=True)
class HubServer:
    name: str  # "" for the default server
    ready: bool
    pending: str | None  # "spawn", "stop", ... while a transition runs
    started: float | None  # unix time


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    groups: tuple[str, ...]
    last_activity: float | None
    servers: tuple[HubServer, ...]


@dataclass(frozen=True)
class HubSnapshot:
    users: tuple[HubUser, ...]


@dataclass(frozen=True)
class Page:
    items: list[Any]
    limit: int | None  # None: an unpaginated answer, everything is in items
    total: int | None


def parse_timestamp(value: Any) -> float | None:
    """JupyterHub's ISO 8601 UTC ('2024-05-01T12:00:00.123456Z') as unix time; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise HubResponseError(f"timestamp {value!r} is not a string")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value  # Python 3.10 wants +00:00
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HubResponseError(f"timestamp {value!r} is not ISO 8601") from exc
    if moment.tzinfo is None:  # the hub means UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_page(body: Any) -> Page:
    """One answer of GET /users: the paginated envelope or a plain list."""
    if isinstance(body, list):
        return Page(body, None, None)
    if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
        raise HubResponseError("GET /users answered neither a list nor a page of items")
    pagination = body.get("_pagination")
    if not isinstance(pagination, Mapping):
        raise HubResponseError("GET /users page has no _pagination")
    limit, total = pagination.get("limit"), pagination.get("total")
    if not (isinstance(limit, int) and limit > 0 and isinstance(total, int) and total >= 0):
        raise HubResponseError("GET /users page has a bad _pagination limit or total")
    return Page(body["items"], limit, total)


def _field(model: Mapping[str, Any], key: str, user: str) -> Any:
    if key not in model:
        raise HubResponseError(
            f"user model of {user!r} lacks {key!r}: the token needs scope {FIELD_SCOPES[key]}"
        )
    return model[key]


def parse_server(name: Any, model: Any, user: str) -> HubServer:
    if not isinstance(name, str) or not isinstance(model, Mapping):
        raise HubResponseError(f"server {name!r} of {user!r} is not a server model")
    for key in SERVER_FIELDS:
        if key not in model:
            raise HubResponseError(f"server model {name!r} of {user!r} lacks {key!r}")
    pending = model["pending"]
    return HubServer(
        name=name,
        ready=model["ready"] is True,
        pending=pending if isinstance(pending, str) and pending else None,
        started=parse_timestamp(model["started"]),
    )


def parse_user(model: Any) -> HubUser:
    """A user model (as the least-privilege token sees it) as a HubUser."""
    if not isinstance(model, Mapping):
        raise HubResponseError("a user in GET /users is not an object")
    name = _field(model, "name", "?")
    if not isinstance(name, str) or not name:
        raise HubResponseError(f"user name {name!r} is not a non-empty string")
    groups = _field(model, "groups", name)
    servers = _field(model, "servers", name)
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise HubResponseError(f"groups of {name!r} are not a list of names")
    if not isinstance(servers, Mapping):
        raise HubResponseError(f"servers of {name!r} are not an object")
    return HubUser(
        name=name,
        admin=_field(model, "admin", name) is True,
        groups=tuple(sorted(set(groups))),
        last_activity=parse_timestamp(_field(model, "last_activity", name)),
        servers=tuple(parse_server(k, v, name) for k, v in sorted(servers.items())),
    )


def parse_users(models: list[Any]) -> HubSnapshot:
    """Parses every user model; a user seen on two pages (the list moved) counts once."""
    users = {user.name: user for user in map(parse_user, models)}
    return HubSnapshot(tuple(users[name] for name in sorted(users)))


def forbidden_text(status: int, body: str) -> str:
    """The one-line reason for a 401/403, naming the missing scope when the hub says it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = str(data.get("message", "")) if isinstance(data, Mapping) else ""
    scopes = re.search(r"requires any of \[([^\]]*)\]", message)
    if scopes:
        return f"hub API refused GET /users ({status}): the token lacks scope {scopes.group(1)}"
    # JupyterHub answers 403 "Missing or invalid credentials." to an unknown token.
    reason = f": {message}" if message else ""
    return f"hub API rejected the token ({status}{reason}): check --hub.token-file"


class HubClient:
    """Reads every user from the hub API; one short-lived connection pool per poll."""

    def __init__(
        self,
        api_url: str,
        token: str,
        timeout: float = 5.0,
        concurrency: int = 4,
        page_size: int = PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.concurrency = concurrency
        self.page_size = page_size
        self.transport = transport  # tests replay recorded answers through httpx.MockTransport

    async def fetch_users(self) -> HubSnapshot:
        headers = {
            "Authorization": f"token {self.token}",
            "Accept": f"{PAGINATION_MEDIA_TYPE}, application/json;q=0.9",
        }
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout, transport=self.transport
        ) as client:
            first = await self._get_page(client, 0, self.page_size)
            if first.limit is None or first.total is None:
                return parse_users(first.items)
            offsets = range(first.limit, first.total, first.limit)
            limiter = asyncio.Semaphore(self.concurrency)

            async def page(offset: int) -> Page:
                async with limiter:
                    return await self._get_page(client, offset, first.limit)

            rest = await asyncio.gather(*(page(offset) for offset in offsets))
        return parse_users([item for p in (first, *rest) for item in p.items])

    async def _get_page(self, client: httpx.AsyncClient, offset: int, limit: int | None) -> Page:
        url = f"{self.api_url}/users"
        try:
            # wait_for bounds the whole request, not each read: a hub that trickles
            # bytes cannot hold a poll forever.
            response = await asyncio.wait_for(
                client.get(url, params={"offset": offset, "limit": limit}), self.timeout
            )
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            raise HubUnreachable(f"hub API {url} did not answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            # One text for refused, reset and dropped alike: a hub shutting down passes
            # through several of them, and each new text would be another log line.
            log.debug("hub API request failed: %r", exc)
            raise HubUnreachable(f"hub API {url} unreachable (no HTTP answer)") from exc
        if response.status_code in (401, 403):
            raise HubAuthError(forbidden_text(response.status_code, response.text))
        if response.status_code >= 400:
            raise HubHttpError(f"hub API GET /users answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise HubResponseError("hub API GET /users answered malformed JSON") from exc
        return parse_page(body)
