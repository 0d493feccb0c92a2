"""The HTTP face: /metrics and /api/class (bearer token), a landing line, /healthz, /readyz.

The class-status page for people is not here: it is the hub service ``dlcourse_status``,
behind the hub's login, which reads /api/class with its own copy of the token.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from . import __version__
from .classview import class_status
from .config import Config
from .exposition import build_registry, negotiate
from .scheduler import Scheduler

LANDING = (
    f"dlcourse exporter {__version__}: /metrics and /api/class need the bearer token; "
    "the class-status page is the hub service at /services/dlcourse-status/\n"
)


def create_app(config: Config, scheduler: Scheduler) -> FastAPI:
    registry = build_registry(scheduler)

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

    def authorized(request: Request) -> bool:
        if not config.web_token:
            return False  # fail closed: config.load() never lets this happen
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {config.web_token}".encode())

    def unauthorized() -> Response:
        return PlainTextResponse(
            "bearer token required\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    def metrics(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        encoder, content_type = negotiate(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    @app.get("/")
    def landing() -> Response:
        return PlainTextResponse(LANDING)

    @app.get("/api/class")
    def class_api(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse(class_status(registry.collect()))

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    def readyz() -> Response:
        if scheduler.ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse("first collection not done yet\n", status_code=503)

    return app
