"""A hub API that lies, floods, drips and misspells, for the exporter's hostile-input tests.

JupyterHub cannot be made to send these answers, so a small HTTP server plays the hub's
``GET /hub/api/users``. Its ``mode`` is switched by the test while the exporter runs:

- ``users``: a correct paginated list of ``users`` (user models as the least-privilege
  token sees them; tests/exporter/sources/recorded/ has real ones);
- ``lying-total``: pages of one user each, claiming ``_pagination.total`` = 3,000,000;
- ``huge``: a 61 MB answer (one user whose group list never ends), streamed;
- ``drip``: headers, then one byte every 0.2 s, forever;
- ``forbidden``: 403 with a message of newlines, ANSI escapes and 20 KB of text;
- ``gzip``: the ``users`` answer gzip-compressed, whatever the request accepts (a proxy that
  compresses anyway);
- ``gzip-bomb``: 0.5 MB of gzip that inflates to ``BOMB_BYTES`` of JSON whitespace, whatever
  the request accepts.

``accept_encodings`` records each request's ``Accept-Encoding`` header.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

LYING_TOTAL = 3_000_000
HUGE_BYTES = 61 * 1024 * 1024
BOMB_BYTES = 512 * 1024 * 1024
NASTY_MESSAGE = "Forbidden\n2026-01-01 00:00:00 INFO forged log line\x1b[31m red " + "x" * 20_000


def user_model(name: str, groups: list[str] | None = None, ready: bool = False) -> dict[str, Any]:
    """A user model with exactly the fields the exporter's token sees."""
    server = {"name": "", "ready": True, "pending": None, "started": "2026-01-05T09:00:00Z"}
    return {
        "name": name,
        "admin": False,
        "groups": groups or [],
        "last_activity": "2026-01-05T09:00:00Z",
        "servers": {"": server} if ready else {},
    }


@functools.cache
def gzip_bomb() -> bytes:
    """BOMB_BYTES of JSON whitespace, gzip-compressed (about 0.5 MB); made once."""
    block = b" " * (1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # a gzip member
    parts = [packer.compress(b'{"items": [')]
    parts += [packer.compress(block) for _ in range(BOMB_BYTES // len(block))]
    return b"".join([*parts, packer.compress(b"]}"), packer.flush()])


def page(items: list[Any], offset: int, limit: int, total: int) -> bytes:
    body = {"items": items, "_pagination": {"offset": offset, "limit": limit, "total": total}}
    return json.dumps(body).encode()  # ensure_ascii: a lone surrogate goes out as "\ud800"


class HostileHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "users"
        self.users: list[dict[str, Any]] = []
        self.requests = 0
        self.accept_encodings: list[str | None] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub/api"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HostileHub

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        hub = self.server
        hub.requests += 1
        hub.accept_encodings.append(self.headers.get("Accept-Encoding"))
        query = parse_qs(urlparse(self.path).query)
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["200"])[0])
        try:
            if hub.mode == "users":
                self._send(
                    200, page(hub.users[offset : offset + limit], offset, limit, len(hub.users))
                )
            elif hub.mode == "lying-total":
                self._send(200, page([user_model(f"liar-{offset}")], offset, 1, LYING_TOTAL))
            elif hub.mode == "huge":
                self._send_huge()
            elif hub.mode == "drip":
                self._drip()
            elif hub.mode == "gzip":
                body = page(hub.users[offset : offset + limit], offset, limit, len(hub.users))
                self._send(200, gzip.compress(body), encoding="gzip")
            elif hub.mode == "gzip-bomb":
                self._send(200, gzip_bomb(), encoding="gzip")
            elif hub.mode == "forbidden":
                self._send(403, json.dumps({"status": 403, "message": NASTY_MESSAGE}).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the exporter gave up on us, as it should

    def _send(self, status: int, body: bytes, encoding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_huge(self) -> None:
        # No Content-Length: the client cannot refuse it up front, only by counting.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        head = b'{"_pagination": {"offset": 0, "limit": 200, "total": 1}, "items": [{"name": "x",'
        self.wfile.write(head + b'"groups": [')
        chunk = b'"group-with-a-long-name-to-fill-the-answer",' * 2048
        for _ in range(HUGE_BYTES // len(chunk)):
            self.wfile.write(chunk)
        self.wfile.write(b'"end"]}]}')

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for _ in range(600):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass
