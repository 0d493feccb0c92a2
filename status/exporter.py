"""The exporter's JSON API, read with its bearer token, bounded in size and time.

Both pages and the culler read it: the staff page ``/api/class`` and the students' page
``/api/students/{user}`` with the exporter's bearer token; the culler, with its own token,
``/api/idle``, and it reports a shutdown (``POST /api/students/{user}/culls``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from tornado import httpclient

log = logging.getLogger("dlcourse_status")

# The exporter answers a class of 20,000 students in a few MiB; never hold more than this.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
TIMEOUT_SECONDS = 5.0


class ExporterError(Exception):
    """The exporter did not answer as it should; str() is one line, without its body."""


class Exporter:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = httpclient.AsyncHTTPClient(
            force_instance=True, max_body_size=MAX_ANSWER_BYTES
        )

    async def fetch(
        self, path: str, *, method: str = "GET", body: Any = None
    ) -> httpclient.HTTPResponse:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = httpclient.HTTPRequest(
            self.url + path,
            method=method,
            headers=headers,
            body=None if body is None else json.dumps(body),
            request_timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
        try:
            return await self._client.fetch(request, raise_error=False)
        except (OSError, httpclient.HTTPClientError) as exc:  # refused, timed out, too big
            raise ExporterError(f"{method} {self.url}{path}: {exc}") from None

    async def raw(self, path: str) -> bytes:
        """The body of a 200 answer to GET path."""
        answer = await self.fetch(path)
        if answer.code != 200:
            raise ExporterError(f"GET {self.url}{path}: {answer.code}")
        return answer.body

    async def student(self, user: str) -> dict[str, Any] | None:
        """/api/students/{user}; None when the exporter knows no such user."""
        path = f"/api/students/{quote(user, safe='')}"
        answer = await self.fetch(path)
        if answer.code == 404:
            return None
        if answer.code != 200:
            raise ExporterError(f"GET {self.url}{path}: {answer.code}")
        return decode(answer.body, f"GET {self.url}{path}", dict)

    async def idle_kernels(self) -> list[dict[str, Any]]:
        kernels = decode(await self.raw("/api/idle"), f"GET {self.url}/api/idle", list)
        return [k for k in kernels if isinstance(k, dict)]


def decode(body: bytes, what: str, kind: type[dict] | type[list]) -> Any:
    """body's JSON when it is a kind (an object or a list), else ExporterError naming what."""
    try:
        value = json.loads(body)
    except ValueError:
        raise ExporterError(f"{what}: not JSON") from None
    if not isinstance(value, kind):
        raise ExporterError(f"{what}: not a JSON {'object' if kind is dict else 'list'}")
    return value
