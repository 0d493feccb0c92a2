"""The JupyterHub REST API: every user with admin flag, groups, activity and servers.

Only ``GET {hub}/users`` is called, with a token whose role holds exactly ``list:users``,
``read:users:name``, ``read:users:activity``, ``read:users:groups`` and ``read:servers``
(docs/hub.md). Users' own servers are never called: a request there would count as activity
and keep the idle culler from stopping an idle server.

Pagination (JupyterHub >= 2, so every 4.x to 6.x hub): the first page says the total and
the hub's page size; the remaining pages are fetched by `concurrency` workers. A hub that
answers with a plain list (no pagination) gives everything in that list.

Nothing the hub answers is trusted to be small: at most `max_users` users (the rest are
left out and the snapshot says `truncated`), at most `MAX_PAGES` pages, `MAX_BODY_BYTES`
per answer, `MAX_GROUPS_PER_USER` groups per user, and every request is bounded in time as
a whole. Names are valid UTF-8 and length-capped label values (``untrusted.label_value``).

Parsing is pure (`parse_page`, `parse_user`, `parse_timestamp`); `HubClient` does the
requests; `HubSource` is what the scheduler polls. Errors carry stable one-line texts (no
timings, no counters), because the scheduler logs a source's failure again only when its
text changes.

Each successful poll also tells the shared roster who the students are (see
``sources.roster``); a hub with more users than ``--hub.max-users`` is read up to the cap,
the snapshot says ``truncated`` and one line is logged. After a failure the next attempts
back off (one interval, then two, up to ``MAX_BACKOFF_INTERVALS``), so a hub that is down
or refusing the token is not hammered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from ..backoff import Backoff
from ..model import HubServer, HubSnapshot, HubUser
from ..untrusted import (
    IDENTITY,
    Unreadable,
    label_value,
    log_text,
    read_capped,
    redact_url,
    valid_text,
)
from .base import Source
from .roster import SharedRoster

log = logging.getLogger(__name__)

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
PAGE_SIZE = 200  # JupyterHub's default api_page_max_limit; the hub may cap it lower
MAX_USERS = 20_000
MAX_PAGES = 1_000  # 200,000 users at the default page size; a hub saying limit=1 gets 1,000
MAX_BODY_BYTES = 8 * 1024 * 1024  # a 200-user page is about 200 KB
MAX_ERROR_BODY_BYTES = 64 * 1024  # enough for JupyterHub's one-line JSON error message
MAX_GROUPS_PER_USER = 50
MAX_BACKOFF_INTERVALS = 4

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
        if moment.tzinfo is None:  # the hub means UTC
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError) as exc:  # garbage, or a date out of range
        raise HubResponseError(f"timestamp {label_value(value)!r} is not ISO 8601") from exc


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
        raise HubResponseError(f"a server of {user!r} is not a server model")
    name = label_value(name)
    for key in SERVER_FIELDS:
        if key not in model:
            raise HubResponseError(f"server model {name!r} of {user!r} lacks {key!r}")
    pending = model["pending"]
    return HubServer(
        name=name,
        ready=model["ready"] is True,
        pending=label_value(pending) if isinstance(pending, str) and pending else None,
        started=parse_timestamp(model["started"]),
    )


def parse_user(model: Any) -> HubUser:
    """A user model (as the least-privilege token sees it) as a HubUser."""
    if not isinstance(model, Mapping):
        raise HubResponseError("a user in GET /users is not an object")
    full_name = _field(model, "name", "?")
    if not isinstance(full_name, str) or not full_name:
        raise HubResponseError("a user name is not a non-empty string")
    full_name = valid_text(full_name)
    name = label_value(full_name)
    groups = _field(model, "groups", name)
    servers = _field(model, "servers", name)
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise HubResponseError(f"groups of {name!r} are not a list of names")
    if not isinstance(servers, Mapping):
        raise HubResponseError(f"servers of {name!r} are not an object")
    return HubUser(
        name=name,
        admin=_field(model, "admin", name) is True,
        groups=tuple(sorted({label_value(g) for g in groups}))[:MAX_GROUPS_PER_USER],
        last_activity=parse_timestamp(_field(model, "last_activity", name)),
        servers=tuple(parse_server(k, v, name) for k, v in sorted(servers.items())),
        full_name=full_name,
    )


def parse_users(models: list[Any], truncated: bool = False) -> HubSnapshot:
    """Parses every user model; a user seen on two pages (the list moved) counts once."""
    users = {user.name: user for user in map(parse_user, models)}
    return HubSnapshot(tuple(users[name] for name in sorted(users)), truncated)


def page_offsets(limit: int, total: int, max_users: int) -> range:
    """Offsets of the pages after the first, as far as max_users and MAX_PAGES allow."""
    return range(limit, min(total, max_users, limit * MAX_PAGES), limit)


def forbidden_text(status: int, body: str) -> str:
    """The one-line reason for a 401/403, naming the missing scope when the hub says it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = str(data.get("message", "")) if isinstance(data, Mapping) else ""
    message = log_text(message, 100)  # the hub's words, in our log: one short line
    scopes = re.search(r"requires any of \[([^\]]*)\]", message)
    if scopes:
        return f"hub API refused GET /users ({status}): the token lacks scope {scopes.group(1)}"
    # JupyterHub answers 403 "Missing or invalid credentials." to an unknown token.
    reason = f": {message}" if message else ""
    return f"hub API rejected the token ({status}{reason}): check --hub.token-file"


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]] nested deep
        raise HubResponseError("hub API GET /users answered malformed JSON") from exc


class HubClient:
    """Reads the hub's users; one short-lived connection pool per poll."""

    def __init__(
        self,
        api_url: str,
        token: str,
        timeout: float = 5.0,
        max_users: int = MAX_USERS,
        concurrency: int = 4,
        page_size: int = PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_users = max_users
        self.concurrency = concurrency
        self.page_size = page_size
        self.transport = transport  # tests replay recorded answers through httpx.MockTransport

    async def fetch_users(self) -> HubSnapshot:
        headers = {
            "Authorization": f"token {self.token}",
            "Accept": f"{PAGINATION_MEDIA_TYPE}, application/json;q=0.9",
            **IDENTITY,
        }
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout, transport=self.transport
        ) as client:
            first = await self._get_page(client, 0, self.page_size)
            if first.limit is None or first.total is None:
                items = first.items
                return parse_users(items[: self.max_users], len(items) > self.max_users)
            offsets = page_offsets(first.limit, first.total, self.max_users)
            rest = await self._get_pages(client, iter(offsets), first.limit)
        items = [item for page in (first, *rest) for item in page.items]
        covered = min(first.limit * (1 + len(offsets)), self.max_users)
        truncated = first.total > covered or len(items) > self.max_users
        return parse_users(items[: self.max_users], truncated)

    async def _get_pages(
        self, client: httpx.AsyncClient, offsets: Iterator[int], limit: int
    ) -> list[Page]:
        """Every page, by a fixed number of workers: pages are asked for only as they go."""
        pages: dict[int, Page] = {}

        async def worker() -> None:
            for offset in offsets:  # shared: each offset is taken by one worker
                pages[offset] = await self._get_page(client, offset, limit)

        workers = [asyncio.ensure_future(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:  # one failed page ends the poll: stop the other workers too
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return [pages[offset] for offset in sorted(pages)]

    async def _get_page(self, client: httpx.AsyncClient, offset: int, limit: int | None) -> Page:
        url = f"{self.api_url}/users"

        async def get() -> tuple[int, bytes]:
            params = {"offset": offset, "limit": limit}
            async with client.stream("GET", url, params=params) as response:
                cap = MAX_BODY_BYTES if response.status_code < 400 else MAX_ERROR_BODY_BYTES
                try:
                    return response.status_code, await read_capped(response, cap)
                except Unreadable as exc:
                    if response.status_code < 400:
                        raise HubResponseError(f"hub API GET /users answered {exc}") from exc
                    return response.status_code, b""  # an error page too long or garbled

        try:
            # wait_for bounds the whole request, not each read: a hub that trickles
            # bytes cannot hold a poll forever.
            status, body = await asyncio.wait_for(get(), self.timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            raise HubUnreachable(
                f"hub API {redact_url(url)} did not answer within {self.timeout:g} s"
            ) from exc
        except httpx.TransportError as exc:
            # One text for refused, reset and dropped alike: a hub shutting down passes
            # through several of them, and each new text would be another log line.
            log.debug("hub API request failed: %s", log_text(repr(exc)))
            raise HubUnreachable(f"hub API {redact_url(url)} unreachable (no HTTP answer)") from exc
        if status in (401, 403):
            raise HubAuthError(forbidden_text(status, body.decode(errors="replace")))
        if status >= 400:
            raise HubHttpError(f"hub API GET /users answered HTTP {status}")
        return parse_page(parse_json(body))


class HubSource(Source):
    name = "hub"

    def __init__(
        self,
        client: HubClient,
        interval: float = 15.0,
        roster: SharedRoster | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.interval = interval
        self.roster = roster
        # Half an interval early, so a retry falls on the scheduler's tick, not after it.
        self.backoff = Backoff(
            interval, MAX_BACKOFF_INTERVALS * interval, clock, early=interval / 2
        )
        self._truncated = False
        self._last_error: HubError | None = None

    async def poll(self) -> HubSnapshot:
        if self._last_error is not None and not self.backoff.ready():
            # Backing off: the same error again, so the scheduler logs nothing new.
            raise self._last_error.with_traceback(None)
        try:
            snapshot = await self.client.fetch_users()
        except HubError as exc:
            self.backoff.failed()
            self._last_error = exc
            raise
        self.backoff.succeeded()
        self._last_error = None
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
