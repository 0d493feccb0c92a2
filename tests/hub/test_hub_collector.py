"""The hub collector's rendering, its backoff, and how the configuration switches it on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from dlcourse_exporter.collectors.hub import HubCollector
from dlcourse_exporter.config import ConfigError, load
from dlcourse_exporter.registry import build_collectors, collector_defaults
from dlcourse_exporter.sources.hub import HubClient, HubHttpError, HubSnapshot

RECORDED = Path(__file__).resolve().parent / "recorded"
PAGES = {
    "0": json.loads((RECORDED / "users_page1.json").read_text())["body"],
    "2": json.loads((RECORDED / "users_page2.json").read_text())["body"],
}


class Rendered:
    """A registry over one render() call, for get_sample_value."""

    def __init__(self, collector: HubCollector, snapshot: HubSnapshot | None) -> None:
        self.metrics = list(collector.render(snapshot))
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
    collector = HubCollector(client)
    snapshot = asyncio.run(collector.poll())
    out = Rendered(collector, snapshot)

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
    out = Rendered(HubCollector(recorded_client()[0]), None)
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
    collector = HubCollector(client, interval=10, clock=clock)
    asked_at, errors = [], set()
    for tick in range(0, 130, 10):  # the scheduler's ticks, every interval
        clock.now = 1000.0 + tick
        before = len(calls)
        try:
            asyncio.run(collector.poll())
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
    collector = HubCollector(client, interval=10, clock=clock)
    with pytest.raises(HubHttpError):
        asyncio.run(collector.poll())  # t=0: fails, retry at the next tick
    clock.now += 10
    with pytest.raises(HubHttpError):
        asyncio.run(collector.poll())  # t=10: fails again, wait two intervals
    clock.now += 10
    with pytest.raises(HubHttpError):
        asyncio.run(collector.poll())  # t=20: backing off, no request
    assert len(calls) == 2


def test_hub_collector_is_on_by_default_only_with_a_hub(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret\n")
    web = {"DLCOURSE_WEB_TOKEN_FILE": str(token)}  # the exporter's own, always required
    config, _ = load([], collector_defaults(), environ=web)
    assert "hub" not in config.collectors
    argv = ["--hub.url", "http://127.0.0.1:15001/hub/api", "--hub.token-file", str(token)]
    config, _ = load(argv, collector_defaults(), environ=web)
    assert "hub" in config.collectors
    assert config.hub_token == "secret"
    env = {
        **web, "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api", "JUPYTERHUB_API_TOKEN": "s"
    }  # fmt: skip
    config, _ = load([], collector_defaults(), environ=env)
    assert "hub" in config.collectors
    config, _ = load(["--no-collector.hub"], collector_defaults(), environ=env)
    assert "hub" not in config.collectors
    hub = [
        c
        for c in build_collectors(load([], collector_defaults(), environ=env)[0])
        if c.name == "hub"
    ]
    assert hub[0].interval == 15.0
    assert hub[0].client.api_url == "http://127.0.0.1:8081/hub/api"


def test_hub_collector_enabled_without_url_is_a_one_line_error():
    with pytest.raises(ConfigError) as error:
        load(["--collector.hub"], collector_defaults(), environ={})
    assert "collector hub is enabled but no hub URL is set" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="collector hub is enabled"):
        load([], collector_defaults(), environ={"DLCOURSE_COLLECTOR_HUB": "true"})
