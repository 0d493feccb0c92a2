"""The HTTP face: /metrics and /api/class (bearer token), a landing line, /healthz, /readyz.

/metrics, the one path scraped over and over, is answered in plain ASGI ahead of FastAPI
(``MetricsEndpoint``): bytes already rendered, with no router, no request object, no thread
hop. FastAPI's machinery cost 40 % of a scrape's CPU (measured with wrk -c1 on the 2-core
test machine: 172 µs against 102 µs per scrape), and a sync handler's trip through the
thread pool far more (issue 12: p99 96 ms against 3-5 ms at wrk -c4). The other handlers
are FastAPI's, ``async`` too.

The class-status page for people is not here: it is the hub service ``dlcourse_status``,
behind the hub's login, which reads /api/class with its own copy of the token, and
/api/students/{user} to show each student their own data.

Two credentials: the web token (Prometheus, the status service) reads everything; the
culler's token (``--web.culler-token-file``) reads /api/idle and reports culls, and nothing
else. Prometheus holds the web token, so it cannot forge culls; the culler cannot read the
class's data.
"""

from __future__ import annotations

import hmac
import json
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
from .studentview import idle_kernels, student_status
from .untrusted import label_value

LANDING = (
    f"dlcourse exporter {__version__}: /metrics and /api/* need a bearer token; "
    "the class-status page is the hub service at /services/dlcourse-status/\n"
)
MAX_CULL_BODY_BYTES = 4096
MAX_KERNEL_ID_CHARS = 256


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


def problem(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it grows past limit bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def kernel_to_cull(body: bytes) -> str | None:
    """The kernel id of a cull report ``{"kernel_id": "..."}``; None if it is not one."""
    try:
        report = json.loads(body)
    except ValueError:
        return None
    kernel = report.get("kernel_id") if isinstance(report, dict) else None
    if not isinstance(kernel, str) or not 0 < len(kernel) <= MAX_KERNEL_ID_CHARS:
        return None
    return kernel


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

    def authorized(request: Request, *tokens: str | None) -> bool:
        """Whether it carries the web token (or one of tokens); fails closed when unset."""
        given = request.headers.get("authorization", "")
        return any(bearer_ok(token, given) for token in (config.web_token, *tokens))

    students = next((source for source in scheduler.sources if source.name == "students"), None)

    def students_snapshot() -> Any | None:
        state = scheduler.states.get("students")
        return state.snapshot if state is not None and state.success else None

    @app.get("/")
    async def landing() -> Response:
        return PlainTextResponse(LANDING)

    @app.get("/api/class")
    async def class_api(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        return JSONResponse(class_status(exposition.families()))

    @app.get("/api/students/{user:path}")
    async def student_api(user: str, request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        snapshot = students_snapshot()
        if snapshot is None:
            return problem(503, "no students data: the students collector is off or failing")
        found = student_status(
            label_value(user), snapshot, exposition.families(names=("processes",))
        )
        return problem(404, "unknown user") if found is None else JSONResponse(found)

    @app.get("/api/idle")
    async def idle_api(request: Request) -> Response:
        if not authorized(request, config.culler_token):
            return unauthorized()
        snapshot = students_snapshot()
        if snapshot is None:
            return problem(503, "no students data: the students collector is off or failing")
        return JSONResponse(idle_kernels(snapshot))

    @app.post("/api/students/{user:path}/culls")
    async def cull_api(user: str, request: Request) -> Response:
        # The culler's token only: Prometheus, which holds the web token, cannot forge culls.
        if not bearer_ok(config.culler_token, request.headers.get("authorization", "")):
            return unauthorized()
        body = await capped_body(request, MAX_CULL_BODY_BYTES)
        if body is None:
            return problem(413, f"a cull report is at most {MAX_CULL_BODY_BYTES} bytes")
        kernel = kernel_to_cull(body)
        if kernel is None:
            return problem(400, 'expected {"kernel_id": "<the kernel\'s id>"}')
        culls = students.record_cull(label_value(user), kernel) if students else None
        if culls is None:
            return problem(404, "no such kernel of that user lately")
        return JSONResponse({"user": label_value(user), "kernel_id": kernel, "idle_culls": culls})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz() -> Response:
        if scheduler.ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse("first collection not done yet\n", status_code=503)

    return MetricsEndpoint(app, exposition, config.web_token)
