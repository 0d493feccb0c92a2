"""The page, /api/class read from the exporter, and the OAuth callback, under the hub's prefix."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpserver, ioloop, netutil, web
from tornado.escape import xhtml_escape

from dlcourse_status.exporter import Exporter, ExporterError

log = logging.getLogger("dlcourse_status")

PAGE = (Path(__file__).parent / "status_page.html").read_text()
BIND_RETRY_SECONDS = 1.0
# The page draws every value with textContent; nothing but its own inline code may run.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
}


class ConfigError(Exception):
    """The hub did not hand the service what it needs; str() is one line."""


@dataclass(frozen=True)
class Settings:
    prefix: str  # /services/dlcourse-status/
    listen_host: str
    listen_port: int
    exporter_url: str
    exporter_token: str = field(repr=False)

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> Settings:
        errors = []
        url = urlparse(environ.get("JUPYTERHUB_SERVICE_URL", ""))
        if not (url.hostname and url.port):
            errors.append("JUPYTERHUB_SERVICE_URL (set by the hub) must be http://HOST:PORT")
        prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
        if not prefix:
            errors.append("JUPYTERHUB_SERVICE_PREFIX is not set: run me as a hub service")
        token = environ.get("DLCOURSE_EXPORTER_TOKEN", "").strip()
        if not token:
            errors.append("DLCOURSE_EXPORTER_TOKEN (the exporter's bearer token) is not set")
        exporter = environ.get("DLCOURSE_EXPORTER_URL", "http://127.0.0.1:9945").rstrip("/")
        if not exporter.startswith(("http://", "https://")):
            errors.append(f"DLCOURSE_EXPORTER_URL {exporter!r} must start with http://")
        if errors:
            raise ConfigError("; ".join(errors))
        return cls(prefix, url.hostname, url.port, exporter, token)


class Headers:
    security_headers = HEADERS

    def set_default_headers(self) -> None:
        for name, value in self.security_headers.items():
            self.set_header(name, value)  # type: ignore[attr-defined]


class StatusPage(Headers, HubOAuthenticated, web.RequestHandler):
    @web.authenticated
    def get(self) -> None:
        # JupyterHub asks for its XSRF token on the page's own fetch() of api/class
        # (a cookie-authenticated request that is not a navigation).
        self.finish(PAGE.replace("{{xsrf}}", xhtml_escape(self.xsrf_token)))


class ClassApi(Headers, HubOAuthenticated, web.RequestHandler):
    def initialize(self, exporter: Exporter) -> None:
        self.exporter = exporter

    @web.authenticated
    async def get(self) -> None:
        try:
            body = await self.exporter.raw("/api/class")
        except ExporterError as exc:
            # One line, no body: the exporter's answer is not ours to echo.
            log.warning("%s", exc)
            raise web.HTTPError(502, "the exporter did not answer") from None
        self.set_header("Content-Type", "application/json")
        self.finish(body)


def make_app(settings: Settings) -> web.Application:
    exporter = Exporter(settings.exporter_url, settings.exporter_token)
    prefix = settings.prefix
    return web.Application(
        [
            (prefix, StatusPage),
            (url_path_join(prefix, "api/class"), ClassApi, {"exporter": exporter}),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        # Signs the OAuth state cookie only; a new one per start just asks staff to log in again.
        cookie_secret=secrets.token_bytes(32),
    )


def serve(app: web.Application, settings: Settings, program: str) -> int:
    """Listens where the hub said and runs; 2 with one line when it cannot listen."""
    where = f"{settings.listen_host}:{settings.listen_port}"
    try:
        sockets = bind_when_free(settings.listen_host, settings.listen_port)
    except OSError as exc:
        print(f"{program}: error: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 2
    httpserver.HTTPServer(app).add_sockets(sockets)
    log.info("listening on %s%s", where, settings.prefix)
    ioloop.IOLoop.current().start()
    return 0


def bind_when_free(host: str, port: int) -> list[socket.socket]:
    """The listening sockets, once the port is free. A port in use passes (whatever held it
    is root's: the port is below 1024, installer/layout/ports.py); the hub would start the page
    again after an exit too, but only at its next poll of it, 30 s later (JupyterHub 5,
    services/service.py ``_proc_stopped``, ``Spawner.poll_interval``). Other errors raise."""
    waiting = False
    while True:
        try:
            return netutil.bind_sockets(port, host)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
            if not waiting:
                log.warning(
                    "cannot listen on %s:%s (%s) yet: trying again every %g s",
                    host, port, exc.strerror, BIND_RETRY_SECONDS,
                )  # fmt: skip
                waiting = True
            time.sleep(BIND_RETRY_SECONDS)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_environment(dict(os.environ))
    except ConfigError as exc:
        print(f"dlcourse-status: error: {exc}", file=sys.stderr)
        return 2
    return serve(make_app(settings), settings, "dlcourse-status")
