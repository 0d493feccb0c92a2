"""The hub collector's rendering, the hub source's backoff, and how the configuration
switches them on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dlcourse_exporter import config as exporter_config
from dlcourse_exporter.collectors.hub import HubCollector
from dlcourse_exporter.config import ConfigError
from dlcourse_exporter.model import HubSnapshot
from dlcourse_exporter.sources import build_sources
from dlcourse_exporter.sources.hub import HubClient, HubHttpError, HubSource
from dlcourse_testing.exporter import token_file

RECORDED = Path(__file__).resolve().parents[1] / "sources" / "recorded"
PAGES = {
    "0": json.loads((RECORDED / "users_page1.json").read_text())["body"],
    "2": json.loads((RECORDED / "users_page2.json").read_text())["body"],
}


class Rendered:
    """A registry over one render() call, for get_sample_value."""

    def __init__(self, snapshot: HubSnapshot | None) -> None:
        self.metrics = list(HubCollector().render(snapshot))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self):
        return self.metrics

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def names(self) -> set[str]:
        return {m.name for m in self.metrics if m.samples}


def recorded_client(status: list[int] | None = None) -> tuple[HubClient, list[int]]:
    """A client replaying the recorded hub; `status` (popped per request) injects errors."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        code = status.pop(0) if status else 200
        if code != 200:
            return httpx.Response(code, text="<html>bad gateway</html>")
        return httpx.Response(200, text=PAGES[request.url.params["offset"]])

    client = HubClient("http://hub.test/hub/api", "t", transport=httpx.MockTransport(handler))
    return client, calls


def test_render_publishes_users_groups_activity_and_servers():
    client, _ = recorded_client()
    snapshot = asyncio.run(HubSource(client).poll())
    out = Rendered(snapshot)

    assert out.value("dlcourse_hub_up") == 1
    assert out.value("dlcourse_hub_user_info", user="dlct-rec-ada", admin="true") == 1
    assert out.value("dlcourse_hub_user_info", user="dlct-rec-ben", admin="false") == 1
    assert out.value("dlcourse_hub_user_info", user="dlct-rec-cy", admin="false") == 1
    for user, group in [
        ("dlct-rec-ada", "section-a"),
        ("dlct-rec-ada", "staff"),
        ("dlct-rec-ben", "section-a"),
        ("dlct-rec-cy", "section-b"),
    ]:
        assert out.value("dlcourse_hub_user_group_info", user=user, group=group) == 1
    ada = next(u for u in snapshot.users if u.name == "dlct-rec-ada")
    assert out.value(
        "dlcourse_hub_user_last_activity_timestamp_seconds", user="dlct-rec-ada"
    ) == pytest.approx(ada.last_activity)
    assert (
        out.value("dlcourse_hub_user_last_activity_timestamp_seconds", user="dlct-rec-cy") is None
    )
    # Both states for every user, zeros included.
    expected = {"dlct-rec-ada": (1, 0), "dlct-rec-ben": (0, 1), "dlct-rec-cy": (0, 0)}
    for user, (ready, pending) in expected.items():
        assert out.value("dlcourse_hub_user_servers", user=user, state="ready") == ready
        assert out.value("dlcourse_hub_user_servers", user=user, state="pending") == pending
    # Started time only for a running default server, not for a pending spawn.
    started = "dlcourse_hub_user_server_started_timestamp_seconds"
    assert out.value(started, user="dlct-rec-ada") == pytest.approx(ada.servers[0].started)
    assert out.value(started, user="dlct-rec-ben") is None


def test_hub_down_renders_only_hub_up_zero():
    out = Rendered(None)
    assert out.value("dlcourse_hub_up") == 0
    assert out.names() == {"dlcourse_hub_up"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_back_off_and_recovery_resets():
    client, calls = recorded_client(status=[502, 502, 502, 502])
    clock = FakeClock()
    source = HubSource(client, interval=10, clock=clock)
    asked_at, errors = [], set()
    for tick in range(0, 130, 10):  # the scheduler's ticks, every interval
        clock.now = 1000.0 + tick
        before = len(calls)
        try:
            asyncio.run(source.poll())
        except HubHttpError as exc:
            errors.add(str(exc))
        if len(calls) > before:
            asked_at.append(tick)
    # Waits of 1, 2, 4, 4 intervals after the failures; then the hub answers, and after a
    # success every tick asks again.
    assert asked_at == [0, 10, 30, 70, 110, 120]
    # One stable text over all failed ticks: the scheduler logs it once.
    assert errors == {"hub API GET /users answered HTTP 502"}


def test_backoff_ticks_that_skip_do_not_call_the_hub():
    client, calls = recorded_client(status=[502, 502])
    clock = FakeClock()
    source = HubSource(client, interval=10, clock=clock)
    with pytest.raises(HubHttpError):
        asyncio.run(source.poll())  # t=0: fails, retry at the next tick
    clock.now += 10
    with pytest.raises(HubHttpError):
        asyncio.run(source.poll())  # t=10: fails again, wait two intervals
    clock.now += 10
    with pytest.raises(HubHttpError):
        asyncio.run(source.poll())  # t=20: backing off, no request
    assert len(calls) == 2


def load(argv, environ):
    """The exporter's configuration, with the bearer token it requires (issue 9)."""
    return exporter_config.load([*argv, f"--web.token-file={token_file()}"], environ=environ)


def test_hub_collector_is_on_by_default_only_with_a_hub(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret\n")
    config, _ = load([], environ={})
    assert "hub" not in config.collectors
    argv = ["--hub.url", "http://127.0.0.1:15001/hub/api", "--hub.token-file", str(token)]
    config, _ = load(argv, environ={})
    assert "hub" in config.collectors
    assert config["hub.token"] == "secret"
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "s"}
    config, _ = load([], environ=env)
    assert "hub" in config.collectors
    config, _ = load(["--no-collector.hub"], environ=env)
    assert "hub" not in config.collectors
    [hub] = build_sources(load([], environ=env)[0].values, {"hub"})
    assert hub.interval == 15.0
    assert hub.client.api_url == "http://127.0.0.1:8081/hub/api"


def test_hub_collector_enabled_without_url_is_a_one_line_error():
    with pytest.raises(ConfigError) as error:
        load(["--collector.hub"], environ={})
    assert "collector hub is enabled but no hub URL is set" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="collector hub is enabled"):
        load([], environ={"DLCOURSE_COLLECTOR_HUB": "true"})
