"""The hub source against a real JupyterHub 5 with many users.

Users are created through the hub's API (``POST /hub/api/users`` takes a list of names,
JupyterHub 5.x ``apihandlers/users.py``) and put in four course sections. For each size:
the hub's own time to list them all, page after page of 200 (its ``api_page_max_limit``
default, ``app.py``) as a plain client that only reads the answers; the exporter's hub
client doing the same poll (4 pages at a time, every user parsed); each the median of
three.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from dataclasses import dataclass

import httpx

from dlcourse_exporter.sources.hub import PAGE_SIZE, PAGINATION_MEDIA_TYPE, HubClient
from dlcourse_testing.hub import LiveHub

SECTIONS = 4
BATCH = 500
REPEATS = 3


@dataclass(frozen=True)
class HubTiming:
    users: int
    hub_list_seconds: float
    exporter_poll_seconds: float

    @property
    def ratio(self) -> float:
        return self.exporter_poll_seconds / self.hub_list_seconds


class HubUsers:
    """Grows the hub's user list with made-up students (no accounts: nobody spawns)."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.tag = secrets.token_hex(2)
        self.count = 0
        for section in range(SECTIONS):
            hub.api("POST", f"/groups/h{self.tag}-section{section}")

    def grow_to(self, count: int) -> None:
        while self.count < count:
            names = [
                f"h{self.tag}u{n:05d}" for n in range(self.count, min(count, self.count + BATCH))
            ]
            self.hub.api("POST", "/users", json={"usernames": names}, timeout=300)
            for section in range(SECTIONS):
                members = names[section::SECTIONS]
                path = f"/groups/h{self.tag}-section{section}/users"
                self.hub.api("POST", path, json={"users": members}, timeout=300)
            self.count += len(names)


def hub_list_seconds(hub: LiveHub, token: str) -> float:
    headers = {"Authorization": f"token {token}", "Accept": PAGINATION_MEDIA_TYPE}
    started = time.perf_counter()
    with httpx.Client(base_url=hub.api_url, headers=headers, timeout=60) as client:
        offset, total = 0, 1
        while offset < total:
            page = client.get("/users", params={"offset": offset, "limit": PAGE_SIZE})
            page.raise_for_status()
            total = page.json()["_pagination"]["total"]
            offset += PAGE_SIZE
    return time.perf_counter() - started


def exporter_poll_seconds(hub: LiveHub, token: str, expected: int) -> float:
    client = HubClient(hub.api_url, token, timeout=30)
    started = time.perf_counter()
    snapshot = asyncio.run(client.fetch_users())
    elapsed = time.perf_counter() - started
    if len(snapshot.users) < expected:
        raise RuntimeError(f"the exporter read {len(snapshot.users)} of {expected} hub users")
    return elapsed


def timing(hub: LiveHub, users: int) -> HubTiming:
    token = hub.tokens["dlcourse-exporter"]
    lists, polls = [], []
    for _ in range(REPEATS):  # alternated, so a busy moment of the machine hits both
        lists.append(hub_list_seconds(hub, token))
        polls.append(exporter_poll_seconds(hub, token, users))
    return HubTiming(users, statistics.median(lists), statistics.median(polls))
