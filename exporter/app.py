"""The HTTP face: /metrics and /api/class (bearer token), a landing line, /healthz, /readyz.

/metrics, the one path scraped over and over, is answered in plain ASGI ahead of FastAPI
(``MetricsEndpoint``): bytes already rendered, with no router, no request object, no thread
hop. FastAPI's machinery cost 40 % of a scrape's CPU (measured with wrk -c1 on the 2-core
test machine: 172 µs against 102 µs per scrape), and a sync handler's trip through the
thread pool far more (issue 12: p99 96 ms against 3-5 ms at wrk -c4). The other handlers
are FastAPI's, ``async`` too.

The class-status page for people is not here: it is the hub service ``dlcourse_status``,
behind the hub's login, which reads /api/class with its own copy of the token.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client.exposition import gzip_accepted
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .classview import class_status
from .config import Config
from .exposition import Exposition, negotiate
from .scheduler import Scheduler

LANDING = (
    f"dlcourse exporter {__version__}: /metrics and /api/class need the bearer token; "
    "the class-status page is the hub service at /services/dlcourse-status/\n"
)


def bearer_ok(token: str | None, authorization: str) -> bool:
    """Whether an Authorization header carries the token; never without one (config.load()
    refuses to start without it, and this fails closed all the same)."""
    if not token:
        return False
    return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def unauthorized() -> Response:
    return PlainTextResponse(
        "bearer token required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


class MetricsEndpoint:
    """GET and HEAD /metrics from the exposition's memory; everything else goes on to app."""

    def __init__(self, app: ASGIApp, exposition: Exposition, token: str | None) -> None:
        self.app = app
        self.exposition = exposition
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics":
            await self.app(scope, receive, send)
            return
        await self.answer(scope)(scope, receive, send)

    def answer(self, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse(
                "GET or HEAD\n", status_code=405, headers={"Allow": "GET, HEAD"}
            )
        # The first of a repeated header counts, as in Starlette's Headers.
        headers = {name: value.decode("latin-1") for name, value in reversed(scope["headers"])}
        if not bearer_ok(self.token, headers.get(b"authorization", "")):
            return unauthorized()
        fmt = negotiate(headers.get(b"accept", ""))
        gzipped = gzip_accepted(headers.get(b"accept-encoding", ""))
        extra: dict[str, Any] = {"Vary": "Accept, Accept-Encoding"}
        if gzipped:
            extra["Content-Encoding"] = "gzip"
        body = self.exposition.render(fmt, gzipped)
        return Response(body, media_type=fmt.content_type, headers=extra)


def create_app(config: Config, scheduler: Scheduler, exposition: Exposition) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        yield
        await scheduler.stop()

    app = FastAPI(
        title="dlcourse exporter",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/")
    async def landing() -> Response:
        return PlainTextResponse(LANDING)

    @app.get("/api/class")
    async def class_api(request: Request) -> Response:
        if not bearer_ok(config.web_token, request.headers.get("authorization", "")):
            return unauthorized()
        return JSONResponse(class_status(exposition.families()))

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz() -> Response:
        if scheduler.ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse("first collection not done yet\n", status_code=503)

    return MetricsEndpoint(app, exposition, config.web_token)
