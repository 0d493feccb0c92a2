"""The exporter's HTTP face in process: one /metrics handler, one bearer-token check.

/metrics is answered ahead of FastAPI (``app.MetricsEndpoint``); these tests drive the whole
ASGI application as uvicorn would, without a server process.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest

from dlcourse_exporter import app as exporter_app
from dlcourse_exporter.config import load
from dlcourse_exporter.exposition import Exposition
from dlcourse_exporter.scheduler import Scheduler

TOKEN = "t0ken"
PROTECTED = ("/metrics", "/api/class")


@pytest.fixture
def config(tmp_path):
    token_file = tmp_path / "web-token"
    token_file.write_text(f"{TOKEN}\n")
    config, _ = load([f"--web.token-file={token_file}", "--no-collector.hub"], environ={})
    return config


def asgi(config):
    scheduler = Scheduler([])
    return exporter_app.create_app(config, scheduler, Exposition(scheduler, []))


def call(application, method: str, path: str, headers: dict[str, str] | None = None):
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
            return await client.request(method, path, headers=headers or {})

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/metrics"), ("HEAD", "/metrics"), ("GET", "/api/class")]
)
def test_the_token_is_required(config, method, path):
    application = asgi(config)
    assert call(application, method, path).status_code == 401
    wrong = call(application, method, path, {"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert call(application, method, path, {"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("path", PROTECTED)
def test_without_a_token_configured_nothing_is_served(config, path):
    """config.load() never allows it; the check fails closed all the same (old behaviour:
    /metrics was open to anyone when no token was set)."""
    application = asgi(replace(config, values={**config.values, "web.token": None}))
    assert call(application, "GET", path).status_code == 401
    assert call(application, "GET", path, {"Authorization": "Bearer "}).status_code == 401


def test_one_handler_serves_metrics(config):
    """FastAPI has no /metrics route: MetricsEndpoint answers it, with the one token check
    (old behaviour: a second, unreachable /metrics route with its own copy of the check)."""
    application = asgi(config)
    assert isinstance(application, exporter_app.MetricsEndpoint)
    routes = {route.path for route in application.app.routes}
    assert "/metrics" not in routes
    assert routes == {"/", "/api/class", "/api/idle", "/api/students/{user:path}",
                      "/api/students/{user:path}/culls", "/healthz", "/readyz"}  # fmt: skip
