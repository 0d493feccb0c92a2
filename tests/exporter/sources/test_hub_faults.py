"""Faults: a hub that errs, lies or stalls, and a real hub that goes away and comes back.

The bad answers come from a tiny HTTP server run here (JupyterHub cannot be made to send
them); the hub that stops and restarts is a real one, watched by the exporter subprocess.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from dlcourse_exporter import __version__
from dlcourse_exporter.collectors.hub import HubCollector
from dlcourse_exporter.scheduler import Scheduler
from dlcourse_exporter.sources.hub import HubClient, HubSource
from dlcourse_testing.exporter import RunningExporter, log_lines, value, wait_value
from dlcourse_testing.hub import LiveHub

RECORDED = Path(__file__).resolve().parent / "recorded"
# Long enough for a healthy local answer on a busy machine; "slow" answers after three.
CLIENT_TIMEOUT = 2.0
PAGES = {
    "0": json.loads((RECORDED / "users_page1.json").read_text())["body"],
    "2": json.loads((RECORDED / "users_page2.json").read_text())["body"],
}


class BadHub(ThreadingHTTPServer):
    """Answers GET /hub/api/users as `mode` says; "ok" replays the recorded real hub."""

    daemon_threads = True
    mode = "ok"


class Handler(BaseHTTPRequestHandler):
    server: BadHub

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        mode = self.server.mode
        offset = parse_qs(urlparse(self.path).query).get("offset", ["0"])[0]
        status, body, kind = 200, PAGES.get(offset, PAGES["0"]), "application/json"
        if mode == "slow":
            time.sleep(3 * CLIENT_TIMEOUT)
        elif mode in ("500", "503"):
            status, body = int(mode), json.dumps({"status": int(mode), "message": "oops"})
        elif mode == "malformed":
            body = body[: len(body) // 2]
        elif mode == "html":
            body, kind = "<html><body>Welcome to nginx!</body></html>", "text/html"
        elif mode == "missing":
            page = json.loads(body)
            del page["items"][0]["servers"]
            body = json.dumps(page)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_hub() -> Iterator[BadHub]:
    server = BadHub(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Ticks:
    """The collector's clock, moved one interval per scheduler tick."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("500", "HubHttpError: hub API GET /users answered HTTP 500"),
        ("503", "HubHttpError: hub API GET /users answered HTTP 503"),
        ("malformed", "HubResponseError: hub API GET /users answered malformed JSON"),
        ("html", "HubResponseError: hub API GET /users answered malformed JSON"),
        ("slow", "HubUnreachable: hub API http://127.0.0.1:{port}/hub/api/users did not answer"),
        ("missing", "the token needs scope read:servers"),
    ],
)
def test_fault_fails_the_collector_once_and_recovers(
    bad_hub: BadHub, caplog: pytest.LogCaptureFixture, mode: str, error: str
):
    port = bad_hub.server_address[1]
    client = HubClient(f"http://127.0.0.1:{port}/hub/api", "t", timeout=CLIENT_TIMEOUT)
    ticks = Ticks()
    source = HubSource(client, interval=1.0, clock=ticks)
    scheduler = Scheduler([source])

    def tick() -> float:
        asyncio.run(scheduler.tick())
        ticks.now += source.interval
        families = {m.name: m for m in HubCollector().render(scheduler.states["hub"].snapshot)}
        return families["dlcourse_hub_up"].samples[0].value

    caplog.set_level(logging.INFO, logger="dlcourse_exporter.scheduler")
    assert tick() == 1
    bad_hub.mode = mode
    assert [tick() for _ in range(6)] == [0] * 6
    state = scheduler.states["hub"]
    assert not state.success
    assert error.format(port=port) in state.error
    bad_hub.mode = "ok"
    # Backoff after 4 failures: at most 4 ticks until the next try.
    assert 1 in [tick() for _ in range(5)]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "source hub failed" in m]) == 1, messages
    assert len([m for m in messages if "source hub recovered" in m]) == 1, messages


def test_hub_down_then_back_watched_by_the_exporter(
    make_live_hub: Callable[..., LiveHub], tmp_path: Path
):
    hub = make_live_hub()
    student = hub.add_user(groups=["section-a"])
    interval = 1.0
    exporter = RunningExporter(
        [
            "--no-collector.gpu",
            "--no-collector.processes",
            "--hub.url",
            hub.api_url,
            "--hub.token-file",
            str(hub.token_file()),
            "--hub.interval",
            str(interval),
            "--log.level=debug",  # a line for each request that reaches no hub
        ],
        log_path=tmp_path / "exporter.log",
    )
    try:
        wait_value(exporter, "dlcourse_hub_user_info", 1, user=student, admin="false")
        others = [
            dict(labels)["collector"]
            for (name, labels), ok in exporter.scrape().items()
            if name == "dlcourse_collector_success" and dict(labels)["collector"] != "hub" and ok
        ]
        assert others  # kernels and host, on by default

        hub.stop()
        # That the very next poll reports it is proven with a stepped clock in
        # test_fault_fails_the_collector_once_and_recovers; here, that the exporter serves on.
        samples = wait_value(exporter, "dlcourse_hub_up", 0)

        def seen(name: str, **labels: str) -> float | None:
            return value(samples, name, **labels)

        assert seen("dlcourse_exporter_build_info", version=__version__) == 1
        for collector in others:  # the other collectors keep flowing
            assert seen("dlcourse_collector_success", collector=collector) == 1
        assert seen("dlcourse_collector_success", collector="hub") == 0
        assert seen("dlcourse_collector_last_success_timestamp_seconds", collector="hub")
        assert seen("dlcourse_hub_user_info", user=student, admin="false") is None

        # Two more tries (after backoff) that find no hub: still one "failed" line.
        exporter.wait_for(
            lambda _: len(log_lines(exporter, "hub API request failed")) >= 3,
            what="three tries of the stopped hub",
        )
        hub.start()
        wait_value(exporter, "dlcourse_hub_user_info", 1, user=student, admin="false")
        assert value(exporter.scrape(), "dlcourse_hub_up") == 1
        assert len(log_lines(exporter, "source hub failed")) == 1, exporter.log()
        assert len(log_lines(exporter, "source hub recovered")) == 1, exporter.log()
        assert "Traceback" not in exporter.log()
    finally:
        exporter.stop()
