"""A student's GPU-hours this week and this term, from Prometheus's history.

The exporter's counters (``dlcourse_user_gpu_seconds_total``: utilization integrated over
time, and ``dlcourse_user_gpu_memory_byte_seconds_total``; ../shared/spec/metrics.md v1.2)
start at zero when it restarts; PromQL's ``increase()`` adds across those resets, which no
single answer of the exporter could. Prometheus keeps one term (120 days, docs/security.md),
so "this term" is what it keeps.

The page's own Prometheus user (``my-gpu`` in Prometheus's web-config, its password readable by
root alone, handed to this service by the hub) reads the whole database, as every Prometheus
user does: Prometheus has no per-series permissions. The queries are built here, for the
logged-in user only, with the name escaped; students never send PromQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlencode

from tornado import httpclient

from dlcourse_secretfile import read_secret

WINDOWS = {"week": "7d", "term": "120d"}
SERIES = {
    "gpu_hours": ("dlcourse_user_gpu_seconds_total", 3600.0),
    "gpu_memory_gib_hours": ("dlcourse_user_gpu_memory_byte_seconds_total", 3600.0 * 1024**3),
}
MAX_ANSWER_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 5.0
# History moves slowly: one set of queries per student a minute, however often pages poll.
CACHE_SECONDS = 60.0
CACHE_USERS = 2048


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal (the PromQL docs: Go's escaping rules)."""
    return json.dumps(text)  # JSON's escapes are a subset Go's strconv.Unquote accepts


def usage_query(metric: str, user: str, window: str) -> str:
    return f"sum(increase({metric}{{user={promql_string(user)}}}[{window}]))"


class Prometheus:
    """``password_file`` is read at each use: the installer writes it after the hub first
    starts this service, and may rotate it."""

    def __init__(self, url: str, user: str, password_file: str) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.password_file = password_file
        self._client = httpclient.AsyncHTTPClient(
            force_instance=True, max_body_size=MAX_ANSWER_BYTES
        )
        self._cache: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    def _headers(self) -> dict[str, str]:
        # At most 4 KiB of a regular file, one line; SecretFileError (a ValueError) otherwise.
        password = read_secret(self.password_file)
        basic = base64.b64encode(f"{self.user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {basic}", "Accept": "application/json"}

    async def scalar(self, query: str, at: float, headers: dict[str, str]) -> float:
        request = httpclient.HTTPRequest(
            f"{self.url}/api/v1/query?{urlencode({'query': query, 'time': f'{at:.3f}'})}",
            headers=headers,
            request_timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
        answer = json.loads((await self._client.fetch(request)).body)
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    async def usage(self, user: str) -> dict[str, Any] | None:
        """{"week": {"gpu_hours": h, "gpu_memory_gib_hours": gh}, "term": {...}}, or None
        when Prometheus does not answer (the page then says so)."""
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        keys = [(w, s) for w in WINDOWS for s in SERIES]
        # Every query at one instant: increase() extrapolates to the end of its range, so a
        # week asked a moment after the term could show more GPU-hours than the term.
        at = time.time()
        try:
            headers = self._headers()
            values = await asyncio.gather(
                *(self.scalar(usage_query(SERIES[s][0], user, WINDOWS[w]), at, headers)
                  for w, s in keys)
            )  # fmt: skip
        except (OSError, httpclient.HTTPClientError, ValueError, KeyError, IndexError, TypeError):
            result = None
        else:
            result = {w: {} for w in WINDOWS}
            for (window, series), value in zip(keys, values, strict=True):
                result[window][series] = value / SERIES[series][1]
        self._cache[user] = (now, result)
        self._cache.move_to_end(user)
        while len(self._cache) > CACHE_USERS:
            self._cache.popitem(last=False)
        return result
