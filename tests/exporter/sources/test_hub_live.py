"""The exporter against a real JupyterHub: users, admins, groups, server states, tokens.

One class on the session's hub: ada (admin, sections a and staff), ben (ready server),
cy (spawn held pending), dee (never started). The exporter runs as a subprocess with only
the hub collector and the least-privilege token, and is scraped over HTTP.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dlcourse_exporter.sources.hub import parse_timestamp
from dlcourse_installer.rendered.templates import EXPORTER_SCOPES
from dlcourse_testing.exporter import RunningExporter, log_lines, value, wait_value
from dlcourse_testing.hub import LiveHub

HUB_ONLY = [
    *("--no-collector.gpu", "--no-collector.processes"),
    *("--no-collector.kernels", "--no-collector.host"),
    *("--hub.interval", "1"),
]


@dataclass
class ClassOnHub:
    hub: LiveHub
    ada: str
    ben: str
    cy: str
    dee: str
    ben_server: dict
    before_start: float


@pytest.fixture(scope="module")
def class_on_hub(live_hub: LiveHub) -> Iterator[ClassOnHub]:
    hub = live_hub
    ada = hub.add_user(admin=True, groups=["section-a", "staff"])
    ben = hub.add_user(groups=["section-a"])
    cy = hub.add_user(groups=["section-b"])
    dee = hub.add_user()
    before = time.time()
    server = hub.start_server(ben)
    hub.hold_spawn(cy)
    yield ClassOnHub(hub, ada, ben, cy, dee, server, before)
    for name in (ada, ben, cy, dee):
        hub.remove_user(name)


def run_exporter(hub: LiveHub, tmp_path: Path, token: str = "dlcourse-exporter") -> RunningExporter:
    args = ["--hub.url", hub.api_url, "--hub.token-file", str(hub.token_file(token))]
    return RunningExporter([*HUB_ONLY, *args], log_path=tmp_path / "exporter.log")


@pytest.fixture
def exporter(class_on_hub: ClassOnHub, tmp_path: Path) -> Iterator[RunningExporter]:
    process = run_exporter(class_on_hub.hub, tmp_path)
    yield process
    process.stop()


def test_exporter_publishes_the_hub_class(class_on_hub: ClassOnHub, exporter: RunningExporter):
    c = class_on_hub
    samples = wait_value(exporter, "dlcourse_hub_up", 1)

    def seen(name: str, **labels: str) -> float | None:
        return value(samples, name, **labels)

    assert seen("dlcourse_collector_success", collector="hub") == 1
    assert seen("dlcourse_hub_user_info", user=c.ada, admin="true") == 1
    for user in (c.ben, c.cy, c.dee):
        assert seen("dlcourse_hub_user_info", user=user, admin="false") == 1
        assert seen("dlcourse_hub_user_info", user=user, admin="true") is None
    memberships = {
        (dict(labels)["user"], dict(labels)["group"])
        for (name, labels) in samples
        if name == "dlcourse_hub_user_group_info"
        and dict(labels)["user"] in (c.ada, c.ben, c.cy, c.dee)
    }
    assert memberships == {
        (c.ada, "section-a"),
        (c.ada, "staff"),
        (c.ben, "section-a"),
        (c.cy, "section-b"),
    }
    states = {"ready": {c.ben: 1}, "pending": {c.cy: 1}}
    for user in (c.ada, c.ben, c.cy, c.dee):
        for state in ("ready", "pending"):
            expected = states[state].get(user, 0)
            assert seen("dlcourse_hub_user_servers", user=user, state=state) == expected

    started = seen("dlcourse_hub_user_server_started_timestamp_seconds", user=c.ben)
    assert started == pytest.approx(parse_timestamp(c.ben_server["started"]))
    assert c.before_start - 1 <= started <= time.time()
    # A pending spawn and a user without a server have no start time.
    assert seen("dlcourse_hub_user_server_started_timestamp_seconds", user=c.cy) is None
    assert seen("dlcourse_hub_user_server_started_timestamp_seconds", user=c.dee) is None

    # The hub records activity when a spawn starts; dee has none at all.
    activity = "dlcourse_hub_user_last_activity_timestamp_seconds"
    ben_model = c.hub.user_model(c.ben)
    assert seen(activity, user=c.ben) == pytest.approx(parse_timestamp(ben_model["last_activity"]))
    assert seen(activity, user=c.ben) >= c.before_start - 1
    assert seen(activity, user=c.dee) is None


def test_exporter_follows_a_server_that_stops(class_on_hub: ClassOnHub, tmp_path: Path):
    hub = class_on_hub.hub
    eve = hub.add_user()
    hub.start_server(eve)
    process = run_exporter(hub, tmp_path)
    try:
        wait_value(process, "dlcourse_hub_user_servers", 1, user=eve, state="ready")
        hub.stop_server(eve)
        # While it stops, the hub reports it pending ("stop"); then it is gone.
        wait_value(process, "dlcourse_hub_user_servers", 0, user=eve, state="ready")
        wait_value(process, "dlcourse_hub_user_servers", 0, user=eve, state="pending")
        samples = process.scrape()
        assert value(samples, "dlcourse_hub_user_servers", user=eve, state="ready") == 0
        started = "dlcourse_hub_user_server_started_timestamp_seconds"
        assert value(samples, started, user=eve) is None
    finally:
        process.stop()
        hub.remove_user(eve)


def test_server_runs_as_the_real_account(class_on_hub: ClassOnHub):
    if os.geteuid() != 0:
        pytest.skip("needs root: real accounts and LocalProcessSpawner")
    pid = class_on_hub.ben_server["state"]["pid"]
    uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
    assert pwd.getpwuid(uid).pw_name == class_on_hub.ben


def test_the_exporter_token_cannot_reach_user_servers(class_on_hub: ClassOnHub):
    hub = class_on_hub.hub
    url = f"{hub.public_url}/user/{class_on_hub.ben}/api/kernels"
    headers = {"Authorization": f"token {hub.tokens['dlcourse-exporter']}"}
    assert httpx.get(url, headers=headers).status_code == 403
    # ... while the test driver's admin token can (that is how tests start kernels).
    assert hub.kernels(class_on_hub.ben) == []
    # And it sees no more than the role grants: no roles, no server state, no auth state.
    (model,) = [u for u in hub.users_json() if u["name"] == class_on_hub.ben]
    allowed = {"kind", "name", "admin", "groups", "last_activity", "servers", "user_info"}
    assert set(model) <= allowed
    assert "state" not in model["servers"][""]


def docs_snippet() -> str:
    text = (Path(__file__).resolve().parents[3] / "docs" / "hub.md").read_text()
    return text.split("```python", 1)[1].split("```", 1)[0]


def test_docs_snippet_on_a_real_hub(make_live_hub: Callable[..., LiveHub], tmp_path: Path):
    """The snippet lecturers paste: appended after services were assigned, as under TLJH."""
    token_file = tmp_path / "hub-token"
    token_file.write_text(secrets.token_hex(32) + "\n")
    snippet = docs_snippet()
    assert tuple(re.findall(r'"((?:list|read|access|admin)[:\w]*)"', snippet)) == EXPORTER_SCOPES
    hub = make_live_hub(
        services={"no-list": ()},
        extra_config=snippet.replace("/etc/dlcourse/hub-token", str(token_file)),
    )
    headers = {"Authorization": f"token {token_file.read_text().strip()}"}
    me = httpx.get(f"{hub.api_url}/user", headers=headers).json()
    assert (me["kind"], me["name"]) == ("service", "dlcourse-exporter")
    assert set(me["scopes"]) == set(EXPORTER_SCOPES)
    assert httpx.get(f"{hub.api_url}/users", headers=headers).status_code == 200
    # The services assigned before the snippet are still there: it appended.
    assert hub.api("GET", "/services").json().keys() >= {"test-driver", "no-list"}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("no-list", "hub API refused GET /users (403): the token lacks scope list:users"),
        ("no-groups", "lacks 'groups': the token needs scope read:users:groups"),
        ("wrong", "hub API rejected the token (403: Missing or invalid credentials.)"),
    ],
)
def test_token_faults_give_hub_up_0_and_one_log_line(
    class_on_hub: ClassOnHub, tmp_path: Path, token: str, message: str
):
    hub = class_on_hub.hub
    if token == "wrong":
        hub.tokens["wrong"] = "0123456789abcdef"  # a token the hub never issued
    log_start = hub.log_size()
    process = run_exporter(hub, tmp_path, token)
    try:
        samples = wait_value(process, "dlcourse_collector_success", 0, collector="hub")
        assert value(samples, "dlcourse_hub_up") == 0
        assert not any(name.startswith("dlcourse_hub_user") for name, _ in samples)
        # Two more tries after backoff (the hub logs every request), still one line.
        process.wait_for(
            lambda _: hub.log_since(log_start).count("GET /hub/api/users?") >= 3,
            what="three requests of the exporter in the hub's log",
        )
        lines = log_lines(process, "source hub failed")
        assert len(lines) == 1, process.log()
        assert message in lines[0]
        assert hub.tokens.get(token, "") not in process.log()  # never the secret itself
        assert "Traceback" not in process.log()
    finally:
        process.stop()
        hub.tokens.pop("wrong", None)
